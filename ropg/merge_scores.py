"""Merge the scorer's shard files into the one ``--scores_path`` file of train_kd / train_rl.

    python -m ropg.merge_scores --output_dir runs/ropg/feedback/train --output runs/ropg/feedback/train.json
    python -m ropg.merge_scores --inputs a/scores_0_48.json b/scores_48_-1.json --output train.json

A key scored differently by two shards is an error; the same key with the same values is kept once.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import parse_args, run, write_config, writable_file
from data.errors import input_error


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ropg.merge_scores", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--output_dir", type=Path, help="the scorer's --output_dir: all scores_<start>_<end>.json")
    sources.add_argument("--inputs", type=Path, nargs="+", help="shard files to merge")
    parser.add_argument("--output", required=True, type=writable_file, help="merged scores file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from ropg.feedback import shard_files, write_merged

    if args.output_dir is not None and not args.output_dir.is_dir():
        raise input_error(args.output_dir, "folder not found")
    paths = args.inputs or shard_files(args.output_dir)
    if not paths:
        raise input_error(args.output_dir, "no scores_<start>_<end>.json files")
    merged = write_merged(paths, args.output)
    write_config(args.output.parent, args, output=str(args.output))
    print(f"merged {len(paths)} files, {len(merged)} (question, item) pairs: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
