"""Throughput of the long-text metrics (ROUGE + METEOR) with one worker process and with all of them.

    python bench/bench_eval.py                       # 10,000 LongLaMP-length pairs, rouge-1 rouge-L meteor
    python bench/bench_eval.py --num_pairs 1000 --workers 2 --metrics rouge-L

The pairs are synthetic and deterministic (seeded): references of 150-300 words in sentences, and
predictions that keep, inflect, replace, drop or insert words of their reference, so ROUGE and METEOR land
in the middle of their range and METEOR's stem and WordNet-synonym matching is exercised. Both runs must
give identical per-example scores; the script says so and prints predictions/second for each. The last
line is JSON (speedup: all workers over one).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import random
import time
from typing import Sequence

import numpy as np

from bench.quick import add_quick_argument, parse_bench_args
from data.cli import run
from eval.metrics import example_stats

TASK = "LongLaMP_2"
VOCABULARY = """
the a of and to in that for with on as by from this an is was are be have has it we our their they
model data user users profile review product paper method result results study system approach task
language text writing style personal history work time year people book movie story quality price
generate propose show improve learn train evaluate compare present describe analyse build use find
new large small good great better strong simple different important recent previous personalized
quickly clearly often well very also however therefore first second finally overall indeed
""".split()
INFLECTIONS = ("s", "ed", "ing", "ly")


def synthetic_pairs(count: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    predictions, references = [], []
    for _ in range(count):
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(150, 300))]
        predicted = []
        for word in words:
            roll = rng.random()
            if roll < 0.55:
                predicted.append(word)
            elif roll < 0.65:
                predicted.append(word + rng.choice(INFLECTIONS))
            elif roll < 0.85:
                predicted.append(rng.choice(VOCABULARY))
            elif roll < 0.95:
                predicted += [word, rng.choice(VOCABULARY)]
        references.append(_sentences(words, rng))
        predictions.append(_sentences(predicted, rng))
    return predictions, references


def _sentences(words: list[str], rng: random.Random) -> str:
    sentences, start = [], 0
    while start < len(words):
        end = start + rng.randint(8, 20)
        sentence = " ".join(words[start:end])
        sentences.append(sentence[:1].upper() + sentence[1:] + ".")
        start = end
    return " ".join(sentences)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_eval.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_pairs", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes of the parallel run (default: all cores, %(default)s)")
    parser.add_argument("--metrics", nargs="+", default=["rouge-1", "rouge-L", "meteor"],
                        help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0)
    add_quick_argument(parser, num_pairs=400)
    return parser


def timed_stats(predictions: list[str], references: list[str], metrics: list[str],
                workers: int) -> tuple[dict[str, np.ndarray], float]:
    start = time.perf_counter()
    stats = example_stats(TASK, predictions, references, metrics, workers=workers)
    return stats, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    predictions, references = synthetic_pairs(args.num_pairs, args.seed)
    mean_words = np.mean([len(reference.split()) for reference in references])
    print(f"{args.num_pairs} synthetic pairs, {mean_words:.0f} words per reference on average "
          f"(seed {args.seed}); metrics: {', '.join(args.metrics)}; {os.cpu_count()} CPU cores")
    serial, serial_seconds = timed_stats(predictions, references, args.metrics, workers=1)
    print(f"workers=1: {serial_seconds:.1f} s, {args.num_pairs / serial_seconds:.1f} predictions/s")
    parallel, parallel_seconds = timed_stats(predictions, references, args.metrics, workers=args.workers)
    identical = all(np.array_equal(serial[name], parallel[name]) for name in args.metrics)
    print(f"workers={args.workers}: {parallel_seconds:.1f} s, {args.num_pairs / parallel_seconds:.1f} "
          f"predictions/s ({serial_seconds / parallel_seconds:.2f}x); per-example scores identical to "
          f"workers=1: {'yes' if identical else 'NO'}")
    means = ", ".join(f"{name} {values.mean():.4f}" for name, values in serial.items())
    print(f"means: {means}")
    print(json.dumps({"num_pairs": args.num_pairs, "metrics": args.metrics, "workers": args.workers,
                      "serial_predictions_per_s": round(args.num_pairs / serial_seconds, 1),
                      "parallel_predictions_per_s": round(args.num_pairs / parallel_seconds, 1),
                      "speedup": round(serial_seconds / parallel_seconds, 3), "identical": identical}))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(run(main))
