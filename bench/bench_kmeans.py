"""Balanced k-means (curp.kmeans): the vectorized conflict-round version vs the per-cluster loop.

    python bench/bench_kmeans.py                      # 10,000 x 384 points, K = 1,000, 3 iterations each
    python bench/bench_kmeans.py --iterations 10

Both run the same number of iterations from the same start (identical capacities N // K); the figure is
seconds per iteration. The last line is JSON.
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

from bench.quick import add_quick_argument, parse_bench_args
from data.cli import run


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_kmeans.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_points", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--num_clusters", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=3, help="k-means iterations timed for each version")
    parser.add_argument("--seed", type=int, default=0)
    add_quick_argument(parser, num_points=5000, num_clusters=500, iterations=2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    import torch

    from curp.kmeans import balanced_kmeans, balanced_kmeans_reference, initial_centroids

    points = torch.randn(args.num_points, args.dim, generator=torch.Generator().manual_seed(args.seed))
    start = initial_centroids(points, args.num_clusters, torch.Generator().manual_seed(args.seed))
    timings, results = {}, {}
    for name, method in (("vectorized", balanced_kmeans), ("loop", balanced_kmeans_reference)):
        began = time.perf_counter()
        results[name] = method(points, args.num_clusters, args.iterations, centroids=start)
        timings[name] = (time.perf_counter() - began) / results[name].iterations
        sizes = torch.bincount(results[name].assignments, minlength=args.num_clusters)
        print(f"{name}: {results[name].iterations} iterations, {timings[name]:.3f} s per iteration, "
              f"cluster sizes {int(sizes.min())}..{int(sizes.max())}")
    agree = float((results["vectorized"].assignments == results["loop"].assignments).float().mean())
    speedup = timings["loop"] / timings["vectorized"]
    print(f"speed-up {speedup:.1f}x; assignments identical for {agree:.2%} of points; "
          f"torch threads {torch.get_num_threads()}")
    print(json.dumps({"num_points": args.num_points, "dim": args.dim, "num_clusters": args.num_clusters,
                      "iterations": args.iterations, "vectorized_s_per_iter": round(timings["vectorized"], 4),
                      "loop_s_per_iter": round(timings["loop"], 4), "speedup": round(speedup, 2),
                      "same_assignments": agree}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
