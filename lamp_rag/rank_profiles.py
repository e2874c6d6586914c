"""Rank every question's whole profile and write ``{question_id: [profile item ids, best first]}``.

    python -m lamp_rag.rank_profiles --task LaMP_4 --ranker bm25 \\
        --input_data_addr data/sample/LaMP_4/dev_questions.json --output_ranking_addr runs/rank/LaMP_4_dev_bm25.json
    python -m lamp_rag.rank_profiles ... --ranker contriever --contriever_checkpoint facebook/contriever

Works for every LaMP and LongLaMP task (LaMP questions files or LongLaMP records); the query and the
documents come from the task registry (spec lamp.md 3.2), the rankers from ``lamp_rag.retrieval``:
bm25 (rank_bm25 BM25Okapi, exact scores and order), contriever (unnormalized dot product of mean-pooled
embeddings), recency (newest first) and random (seeded, without replacement). The output is written
atomically, with its provenance in <output>.config.json beside it (so a dev ranking written next to the
train ranking keeps both); feed it to ``python -m lamp_rag.merge_with_rank``.

--contriever_checkpoint facebook/contriever works offline when that model is in the local Hugging Face
cache (or in --cache_dir); --allow_download lets it be downloaded (with HF_HUB_OFFLINE=0).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import (ModelOptions, add_dataclass_arguments, add_task_argument, add_workers_argument, config_path,
                      from_args, parse_args, run, writable_file, write_config)
from data.errors import InputError, input_error
from lamp_rag.retrieval import RANKERS, RetrievalOptions


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.rank_profiles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_data_addr", required=True, type=Path,
                        help="questions file: LaMP questions JSON or LongLaMP records (JSON, JSONL, parquet)")
    parser.add_argument("--output_ranking_addr", required=True, type=writable_file,
                        help="JSON file to write: {question_id: [profile item ids, best first]}")
    add_task_argument(parser)
    parser.add_argument("--ranker", required=True, choices=RANKERS, help="how profile items are ordered")
    parser.add_argument("--use_date", action="store_true",
                        help="append ' date: <date>' to every document (tasks with a date field)")
    parser.add_argument("--batch_size", type=int, default=16, help="contriever: texts per encoder batch "
                                                                   "(default: %(default)s)")
    parser.add_argument("--contriever_checkpoint", default="default",
                        help="contriever: 'default' (packaged all-MiniLM-L6-v2, offline) or an HF encoder "
                             "folder / cached hub id such as facebook/contriever (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random: seed of the permutations")
    add_workers_argument(parser, "bm25 on large files")
    add_dataclass_arguments(parser, RetrievalOptions, "contriever search",
                            exclude=[name for name in RetrievalOptions.__dataclass_fields__ if name != "dense_index"])
    add_dataclass_arguments(parser, ModelOptions, "contriever model", exclude=("model_name", "dtype", "backend"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    if args.batch_size < 1:
        raise InputError(f"--batch_size must be at least 1, got {args.batch_size}")
    from data.io import atomic_write_json
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.retrieval import rank_examples

    spec = get_task(args.task)
    examples = load_examples(args.input_data_addr, task=spec.name)
    if not examples:
        raise input_error(args.input_data_addr, "no questions")
    encoder = None
    if args.ranker == "contriever":
        encoder = from_args(ModelOptions, args).load_encoder(args.contriever_checkpoint)
    rankings = rank_examples(spec, examples, args.ranker, use_date=args.use_date, encoder=encoder,
                             seed=args.seed, batch_size=args.batch_size,
                             workers=args.workers, dense_index=args.dense_index)
    atomic_write_json(args.output_ranking_addr, {example.id: ranking for example, ranking
                                                 in zip(examples, rankings)})
    config = config_path(args.output_ranking_addr)
    write_config(config.parent, args, filename=config.name, output=str(args.output_ranking_addr))
    print(f"ranked {len(examples)} profiles with {args.ranker}: {args.output_ranking_addr} (config: {config})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
