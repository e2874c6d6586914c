"""One retriever's feedback for RSPG: the LLM's output and per-example metrics with that retriever's prompt.

    python -m rspg.retriever_utilization_scorer --data_addr data/sample/LaMP_4/dev_questions.json \\
        --data_outputs data/sample/LaMP_4/dev_outputs.json --task LaMP_4 --model_name default \\
        --use_profile --retriever bm25 --num_retrieved 4 --output_dir runs/rspg/LaMP_4/dev/bm25_4

Leave out --use_profile for the no-profile arm. --output_dir is a run folder (runtime.run_folder):
predictions.json, scores.json (the eval report), prompts.jsonl, generations.jsonl (the resume log: a rerun
reuses finished generations), config.json, run.log, and feedback.json, the reference's per-question
{"<id>": {"metric", "output", "input"}} file that rspg.create_data reads.

Generation is batched across questions (the reference generates with one Trainer.predict for all); the
reference's beam 4 is --num_beams 4 (default greedy, cheaper on CPU).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from data.cli import (add_generation_arguments, add_model_arguments, add_retrieval_arguments, add_task_argument,
                      generation_options, parse_args, run, setup_logging, writable_dir)
from data.errors import input_error
from data.prompts import PROMPT_STYLES

log = logging.getLogger("lampkit.rspg")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rspg.retriever_utilization_scorer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_addr", required=True, type=Path,
                        help="questions with golds: a merge_with_rank output, or LaMP questions with "
                             "--data_outputs")
    parser.add_argument("--data_outputs", type=Path, default=None,
                        help="gold outputs {task, golds} when the questions file has none")
    add_task_argument(parser)
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="run folder of this retriever")
    parser.add_argument("--prompt_style", default="auto", choices=("auto", *PROMPT_STYLES),
                        help="auto (default): chat turns for decoder-only chat models, the official LaMP "
                             "string prompt otherwise (as lamp_rag.evaluate_llm)")
    parser.add_argument("--max_length", type=int, default=256,
                        help="official style: the prompt's token budget, also its final cut (default: %(default)s)")
    parser.add_argument("--max_item_tokens", type=int, default=None,
                        help="chat style: cut each profile item's input text to this many tokens (default: no cut)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N questions")
    add_model_arguments(parser)
    add_retrieval_arguments(parser)
    add_generation_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.io import atomic_write_json
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.pipeline import (build_prompts, official_prompt_cut, prompt_cut_options, resolve_prompt_style,
                                   retrieve_items)
    from rspg.feedback import FEEDBACK_FILE, question_feedback
    from runtime.generation import generate_and_score, postprocess
    from runtime.run_folder import PREDICTIONS_FILE, write_run_config

    spec = get_task(args.task)
    examples = load_examples(args.data_addr, args.data_outputs, task=spec.name, limit=args.limit)
    if not examples:
        raise input_error(args.data_addr, "no questions")
    missing = [example.id for example in examples if example.target is None]
    if missing:
        raise input_error(args.data_outputs or args.data_addr, "no gold output (feedback needs golds; "
                          "give --data_outputs)", record=missing[0])
    items = retrieve_items(spec, examples, args)

    setup_logging(args.output_dir)
    from lm import load_model

    handle = load_model(args.model_name, device=args.device, dtype=args.dtype, backend=args.backend)
    style = resolve_prompt_style(args.prompt_style, handle)
    arm = f"{args.retriever} top-{args.num_retrieved}" if args.use_profile else "no profile"
    log.info("%s: %d questions, %s, prompt style %s", spec.name, len(examples), arm, style)
    write_run_config(args.output_dir, args, "rspg.retriever_utilization_scorer", prompt_style=style, arm=arm)
    prompts = build_prompts(spec, examples, items, style, handle.tokenizer, args.max_length,
                            max_item_tokens=args.max_item_tokens)
    options = {**generation_options(args, spec.max_new_tokens),
               **prompt_cut_options(official_prompt_cut(style, args.max_length))}
    scores = generate_and_score(spec, handle, examples, prompts, args.output_dir, options)

    from data.loaders import read_golds

    _, predictions = read_golds(args.output_dir / PREDICTIONS_FILE, spec.name)
    outputs = [postprocess(spec, predictions[example.id]) for example in examples]
    path = atomic_write_json(args.output_dir / FEEDBACK_FILE,
                             question_feedback(spec.name, examples, prompts, outputs))
    for name, value in scores.items():
        print(f"{spec.name} {arm} {name}: {value:.4f}")
    print(f"feedback: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
