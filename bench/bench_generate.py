"""Greedy generation throughput of the default LM: one prompt at a time versus batches of 16.

    python bench/bench_generate.py                         # default model, 16 prompts, 32 new tokens
    python bench/bench_generate.py --max_new_tokens 64 --batch_sizes 1 4 16 --threads 2 --repeats 3

Only real generated tokens count: each prompt's new tokens up to and including its first EOS; the padding
a finished row carries while the rest of its batch goes on is not counted. One untimed warm-up call runs
first. The target on 2 CPU cores is batch 16 at least 4x the tokens/s of batch 1. The last line is JSON
(speedup: the largest batch size over the smallest).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import time
from typing import Sequence

from bench.quick import add_model_arguments, add_quick_argument, apply_threads, bench_parser, parse_bench_args
from data.cli import run
from data.errors import InputError

TOPICS = [
    "the city council approved a plan to rebuild the Main Street bridge",
    "a local bakery won a national award for its sourdough bread",
    "scientists found water ice in a crater near the moon's south pole",
    "the football club signed a young striker from a rival team",
    "heavy rain flooded several streets in the old town overnight",
    "a new study links daily walks to better sleep in older adults",
    "the museum reopened after a two-year renovation of its main hall",
    "food prices rose for the third month in a row, official data showed",
    "students built a solar-powered car that crossed the desert in four days",
    "the airline cancelled dozens of flights because of a pilots' strike",
    "researchers trained a robot to fold laundry with human-level accuracy",
    "the central bank kept interest rates unchanged despite rising inflation",
    "a rare orchid was discovered in a forest reserve outside the capital",
    "the school district will give every pupil a free laptop next year",
    "a marathon runner broke the course record by more than a minute",
    "the town library started lending tools, from drills to sewing machines",
]


def make_parser() -> argparse.ArgumentParser:
    parser = bench_parser(__file__, __doc__)
    add_model_arguments(parser, repeats_help="timed runs per batch size")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16], help="default: 1 16")
    add_quick_argument(parser, max_new_tokens=16)
    return parser


def prompts() -> list[str]:
    return [f"Write a one-sentence news headline about this: {topic}." for topic in TOPICS]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if args.repeats < 1 or min(args.batch_sizes) < 1 or args.max_new_tokens < 1:
        raise InputError("--repeats, --batch_sizes and --max_new_tokens must be at least 1")
    from lm import load_model   # torch is imported here, after data.cli.run set the OpenMP wait policy
    from lm.generation import generate_ids
    import torch

    apply_threads(args)
    handle = load_model(args.model_name, device="cpu")
    print(f"model {handle.name} on cpu, {torch.get_num_threads()} threads, {len(TOPICS)} prompts, "
          f"greedy, max_new_tokens={args.max_new_tokens}")
    generate_ids(handle, prompts()[:2], max_new_tokens=4, batch_size=2, progress=False)   # warm-up
    rates = {batch_size: 0.0 for batch_size in args.batch_sizes}
    # Batch sizes alternate within each repeat, so load from other processes hits them alike;
    # the best repeat is the least disturbed one.
    for repeat in range(1, args.repeats + 1):
        for batch_size in args.batch_sizes:
            started = time.perf_counter()
            token_ids = generate_ids(handle, prompts(), max_new_tokens=args.max_new_tokens,
                                     batch_size=batch_size, progress=False)
            seconds = time.perf_counter() - started
            tokens = sum(len(ids) for ids in token_ids)
            rates[batch_size] = max(rates[batch_size], tokens / seconds)
            print(f"repeat {repeat} batch {batch_size:>3}: {tokens} tokens in {seconds:6.1f} s "
                  f"= {tokens / seconds:7.1f} tokens/s")
    print("best: " + ", ".join(f"batch {b} {rate:.1f} tokens/s" for b, rate in rates.items()))
    smallest, largest = min(rates), max(rates)
    speedup = rates[largest] / rates[smallest]
    print(f"speed-up batch {largest} vs batch {smallest}: {speedup:.1f}x")
    print(json.dumps({"prompts": len(TOPICS), "max_new_tokens": args.max_new_tokens,
                      "threads": torch.get_num_threads(), "repeats": args.repeats,
                      **{f"batch_{b}_tokens_per_s": round(rate, 2) for b, rate in rates.items()},
                      "speedup": round(speedup, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
