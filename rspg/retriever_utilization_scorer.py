"""One retriever's feedback for RSPG: the LLM's output and per-example metrics with that retriever's prompt.

    python -m rspg.retriever_utilization_scorer --data_addr data/sample/LaMP_4/dev_questions.json \\
        --data_outputs data/sample/LaMP_4/dev_outputs.json --task LaMP_4 --model_name default \\
        --use_profile --retriever bm25 --num_retrieved 4 --output_dir runs/rspg/LaMP_4/dev/bm25_4

Leave out --use_profile for the no-profile arm. --output_dir is a run folder (runtime.run_folder):
predictions.json, scores.json (the eval report), prompts.jsonl, generations.jsonl (the resume log: a rerun
reuses finished generations), config.json, run.log, and feedback.json, the reference's per-question
{"<id>": {"metric", "output", "input"}} file that rspg.create_data reads.

Generation is batched across questions (the reference generates with one Trainer.predict for all).
Decoding defaults as lamp_rag.evaluate_llm: the official prompt style gets the reference's 4 beams and 128
new tokens, the chat style greedy decoding of the task's registry length.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import (GenerationOptions, ModelOptions, add_dataclass_arguments, add_generation_arguments,
                      add_model_arguments, add_task_argument, from_args, parse_args, run, writable_dir)
from data.errors import input_error
from lamp_rag.options import InputOptions, PromptOptions
from lamp_rag.retrieval import RetrievalOptions


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rspg.retriever_utilization_scorer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_dataclass_arguments(parser, InputOptions, "data")
    data.add_argument("--data_addr", required=True, type=Path,
                      help="questions with golds: a merge_with_rank output, or LaMP questions with --data_outputs")
    data.add_argument("--data_outputs", type=Path, default=None,
                      help="gold outputs {task, golds} when the questions file has none")
    add_task_argument(data)
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="run folder of this retriever")
    add_dataclass_arguments(parser, PromptOptions, "prompt")
    add_model_arguments(parser)
    add_dataclass_arguments(parser, RetrievalOptions, "retrieval")
    add_generation_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.io import atomic_write_json
    from data.loaders import load_examples, read_golds
    from data.tasks import get_task
    from lamp_rag.pipeline import run_zero_shot
    from rspg.feedback import FEEDBACK_FILE, question_feedback
    from runtime.run_folder import PREDICTIONS_FILE

    retrieval = from_args(RetrievalOptions, args)
    spec = get_task(args.task)
    examples = load_examples(args.data_addr, args.data_outputs, task=spec.name,
                             limit=from_args(InputOptions, args).limit)
    if not examples:
        raise input_error(args.data_addr, "no questions")
    missing = [example.id for example in examples if example.target is None]
    if missing:
        raise input_error(args.data_outputs or args.data_addr, "no gold output (feedback needs golds; "
                          "give --data_outputs)", record=missing[0])
    arm = f"{retrieval.retriever} top-{retrieval.num_retrieved}" if retrieval.use_profile else "no profile"
    scores, prompts = run_zero_shot(spec, examples, args.output_dir, "rspg.retriever_utilization_scorer",
                                    from_args(ModelOptions, args), from_args(GenerationOptions, args),
                                    from_args(PromptOptions, args), retrieval, args=args, arm=arm)

    # predictions.json holds the outputs as the runtime post-processed and scored them.
    _, predictions = read_golds(args.output_dir / PREDICTIONS_FILE, spec.name)
    outputs = [predictions[example.id] for example in examples]
    path = atomic_write_json(args.output_dir / FEEDBACK_FILE,
                             question_feedback(spec.name, examples, prompts, outputs))
    for name, value in scores.items():
        print(f"{spec.name} {arm} {name}: {value:.4f}")
    print(f"feedback: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
