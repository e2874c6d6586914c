"""ROPG feedback: the LLM's output and per-example metrics with each single top-N profile item in the prompt.

    python -m ropg.profile_item_utilization_scorer --task LaMP_4 --model_name default \\
        --train_data data/sample/LaMP_4/train_questions.json --train_outputs data/sample/LaMP_4/train_outputs.json \\
        --profile_size 4 --output_dir runs/ropg/feedback/train
    # shards of the flattened (question, item) pairs, then one file:
    python -m ropg.profile_item_utilization_scorer ... --start_index 0 --end_index 48
    python -m ropg.profile_item_utilization_scorer ... --start_index 48 --end_index -1
    python -m ropg.merge_scores --output_dir runs/ropg/feedback/train --output runs/ropg/feedback/train.json

Writes ``<output_dir>/scores_<start>_<end>.json`` keyed ``"{question_id}-{item_id}"`` (spec lamp.md 8.1):
the task's per-example metrics (official names: rouge-1/rouge-L, accuracy, MAE), the LLM's ``output`` and
the item's ``rank`` among the question's candidates. The candidates are the top ``--profile_size`` items by
``--retriever`` (BM25 by default, lamp_rag's ranker), or the file's own order with ``--is_ranked`` (the
reference reads a merge_with_rank file). Unlike the reference (one ``trainer.predict`` per pair, beam 4),
all pairs of a shard are generated in length-sorted batches through the shared runtime, which resumes
from ``<output_dir>/shard_<start>_<end>/generations.jsonl``; prompts are lamp_rag's (``--prompt_style``
auto: chat turns for the packaged chat model, the official string for seq2seq models), so the feedback
measures the items the way RAG evaluation later uses them.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from data.cli import (GenerationOptions, ModelOptions, add_dataclass_arguments, add_generation_arguments,
                      add_model_arguments, add_task_argument, from_args, parse_args, run, setup_logging, writable_dir)
from data.errors import InputError, input_error
from lamp_rag.options import InputOptions, PromptOptions
from lamp_rag.retrieval import RANKERS, RetrievalOptions

log = logging.getLogger("lampkit.ropg")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ropg.profile_item_utilization_scorer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data", required=True, type=Path,
                        help="questions file (LaMP questions, merge_with_rank output or LongLaMP records)")
    parser.add_argument("--train_outputs", type=Path, default=None,
                        help="gold outputs {task, golds} when the questions file has none")
    add_task_argument(parser)
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="folder for the scores files")
    parser.add_argument("--profile_size", required=True, type=int, help="N: score each of the top-N items")
    parser.add_argument("--start_index", type=int, default=0, help="first (question, item) pair of this shard")
    parser.add_argument("--end_index", type=int, default=-1, help="end of this shard, exclusive (-1: the last)")
    add_dataclass_arguments(parser, InputOptions, "data")
    add_dataclass_arguments(parser, RetrievalOptions, "candidates (the top-N items to score)",
                            exclude=("use_profile", "num_retrieved"))
    add_dataclass_arguments(parser, PromptOptions, "prompt", defaults={"max_length": 512})  # reference: 512
    add_model_arguments(parser)
    add_generation_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    if args.profile_size < 1:
        raise InputError(f"--profile_size must be at least 1, got {args.profile_size}")
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.pipeline import build_prompts, official_prompt_cut, prompt_cut_options, resolve_prompt_style
    from ropg.feedback import candidate_pairs, score_pairs, shard_path, shard_range
    from runtime.generation import generate_outputs, postprocess
    from runtime.run_folder import write_run_config

    retrieval, prompt = from_args(RetrievalOptions, args), from_args(PromptOptions, args)
    model = from_args(ModelOptions, args)
    if retrieval.retriever not in RANKERS:
        raise InputError(f"--retriever {retrieval.retriever}: the candidates come from a ranker "
                         f"({', '.join(RANKERS)})")
    spec = get_task(args.task)
    examples = load_examples(args.train_data, args.train_outputs, task=spec.name,
                             limit=from_args(InputOptions, args).limit)
    if not examples:
        raise input_error(args.train_data, "no questions")
    missing = next((example.id for example in examples if example.target is None), None)
    if missing is not None:
        raise input_error(args.train_data, "no gold output (give --train_outputs)", record=missing, field="output")
    encoder = None
    if retrieval.retriever == "contriever" and not retrieval.is_ranked:
        encoder = model.load_encoder(retrieval.retriever_model)
    pairs = candidate_pairs(spec, examples, args.profile_size, retrieval.retriever, retrieval.is_ranked,
                            retrieval.use_date, encoder, retrieval.dense_index)
    selected = [pairs[i] for i in shard_range(len(pairs), args.start_index, args.end_index)]
    # Each shard resumes in its own folder: the runtime's resume log drops lines of ids it was not given.
    shard_dir = args.output_dir / f"shard_{args.start_index}_{args.end_index}"
    setup_logging(shard_dir)
    log.info("%s: %d questions, %d (question, item) pairs, this shard %d", spec.name, len(examples), len(pairs),
             len(selected))

    handle = model.load()
    style = resolve_prompt_style(prompt.prompt_style, handle)
    write_run_config(shard_dir, args, "ropg.profile_item_utilization_scorer", prompt_style=style)
    prompts = build_prompts(spec, [pair.example for pair in selected], [[pair.item] for pair in selected], style,
                            handle.tokenizer, prompt.max_length, max_item_tokens=prompt.max_item_tokens)
    options = {**from_args(GenerationOptions, args).generate_kwargs(spec.max_new_tokens, spec=spec,
                                                                    tokenizer=handle.tokenizer),
               **prompt_cut_options(official_prompt_cut(style, prompt.max_length))}
    raw = generate_outputs(handle, [pair.key for pair in selected], prompts, shard_dir, options,
                           desc=f"feedback {spec.name}")
    scores = score_pairs(spec, selected, [postprocess(spec, text) for text in raw])
    from data.io import atomic_write_json

    path = atomic_write_json(shard_path(args.output_dir, args.start_index, args.end_index), scores)
    print(f"scored {len(scores)} (question, item) pairs: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
