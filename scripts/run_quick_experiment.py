"""A small logit-adjustment run on the embedded sample: 5 users, 48 new tokens, beta 0 and 1, greedy, samples.txt.

    python scripts/run_quick_experiment.py                       # -> runs/logit_adjust/quick
    python scripts/run_quick_experiment.py --task LongLaMP_4 --output_dir runs/la_quick4 -- --token_map unigram

Arguments after ``--`` go to ``python -m logit_adjust.main`` unchanged (they override the defaults here).
Takes a few minutes on 2 CPU cores; the first run also embeds the tokenizer's vocabulary once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))       # run as a plain script from any folder

from data.cli import parse_args, run, writable_dir  # noqa: E402


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python scripts/run_quick_experiment.py",
                                     description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="LongLaMP_2", help="a generation task (default: %(default)s)")
    parser.add_argument("--output_dir", type=writable_dir, default="runs/logit_adjust/quick", help="(default: %(default)s)")
    parser.add_argument("extra", nargs="*", help="more logit_adjust.main flags, after --")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from logit_adjust.main import main as logit_adjust_main

    return logit_adjust_main(["--task", args.task, "--num_users", "5", "--beta", "0", "1",
                              "--max_new_tokens", "48", "--batch_size", "8", "--save_samples",
                              "--output_dir", args.output_dir,
                              *args.extra])


if __name__ == "__main__":
    raise SystemExit(run(main))
