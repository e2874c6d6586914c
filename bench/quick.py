"""``--quick``: the smaller settings a benchmark uses inside ``bash bench/run_all.sh --quick``."""
from __future__ import annotations

import argparse
from typing import Sequence

from data.cli import parse_args


def add_quick_argument(parser: argparse.ArgumentParser, **quick_defaults) -> None:
    """``--quick`` sets these options' defaults (an option given on the command line still wins)."""
    settings = " ".join(f"--{name} {' '.join(map(str, value)) if isinstance(value, list) else value}"
                        for name, value in quick_defaults.items())
    parser.add_argument("--quick", action="store_true", help=f"a quick run: {settings}")
    parser.set_defaults(quick_defaults=quick_defaults)


def parse_bench_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick``, parse again over the quick defaults."""
    args = parse_args(parser, argv)
    if args.quick:
        parser.set_defaults(**args.quick_defaults)
        args = parse_args(parser, argv)
    return args
