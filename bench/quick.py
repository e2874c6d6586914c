"""What every benchmark's command line shares: its parser, the model options, and ``--quick`` (the smaller
settings a benchmark uses inside ``bash bench/run_all.sh --quick``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import parse_args


def bench_parser(script: str, doc: str) -> argparse.ArgumentParser:
    """The parser of ``bench/<script>``: the docstring's first paragraph as description, the rest as epilog."""
    description, _, epilog = doc.partition("\n\n")
    return argparse.ArgumentParser(prog=f"python bench/{Path(script).name}", description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_arguments(parser: argparse.ArgumentParser, repeats: int = 1, repeats_help: str = "timed runs",
                        threads: int | None = None) -> None:
    """``--model_name``, ``--repeats`` (the best run is reported) and ``--threads`` of a model benchmark."""
    parser.add_argument("--model_name", default="default", help="model to load (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"{repeats_help}; the fastest is reported (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=threads,
                        help="torch CPU threads (default: " + ("torch's choice, one per core)" if threads is None
                                                                else "%(default)s; 0 = torch's choice)"))


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads from ``--threads`` (0 or unset: torch's choice)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


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
