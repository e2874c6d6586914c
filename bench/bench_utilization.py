"""ROPG feedback throughput: the same (question, item) pairs scored the reference's way and ours.

    python bench/bench_utilization.py                              # 64 pairs of the LaMP_4 sample, default LM
    python bench/bench_utilization.py --num_pairs 16 --ours_num_beams 4

Reference way (spec lamp.md 8.1): one pair per generate call, beam search with 4 beams. Ours
(ropg.profile_item_utilization_scorer): all pairs in one ``handle.generate`` call, length-sorted batches of
``--batch_size``, with the scorer's decoding (greedy by default; ``--ours_num_beams 4`` measures batching
alone). Both use the same prompts (BM25 top-N single-item prompts of lamp_rag) and ``max_new_tokens``,
and both outputs are scored with eval.metrics so the table shows what the speed costs in feedback. One
untimed warm-up call runs first. Target: ours at least 8x the pairs/s of the reference. The last line is
one JSON object.
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
from data.errors import InputError

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "LaMP_4"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_utilization.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="LaMP_4")
    parser.add_argument("--questions", type=Path, default=SAMPLE / "train_questions.json")
    parser.add_argument("--outputs", type=Path, default=SAMPLE / "train_outputs.json")
    parser.add_argument("--model_name", default="default")
    parser.add_argument("--num_pairs", type=int, default=64, help="(question, item) pairs (default: 64)")
    parser.add_argument("--profile_size", type=int, default=4, help="top-N items per question (default: 4)")
    parser.add_argument("--reference_num_beams", type=int, default=4)
    parser.add_argument("--ours_num_beams", type=int, default=1, help="the scorer's default decoding: greedy")
    parser.add_argument("--batch_size", type=int, default=16, help="ours: prompts per batch (default: 16)")
    parser.add_argument("--max_new_tokens", type=int, default=None, help="default: the task's length")
    add_quick_argument(parser, num_pairs=16, max_new_tokens=16)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if min(args.num_pairs, args.profile_size, args.batch_size) < 1:
        raise InputError("--num_pairs, --profile_size and --batch_size must be at least 1")
    from lm import load_model   # first: lm sets the OpenMP wait policy that torch reads at import
    import torch

    from data.loaders import load_examples
    from data.tasks import get_task
    from eval.metrics import compute_metrics
    from lamp_rag.pipeline import build_prompts, resolve_prompt_style
    from ropg.feedback import candidate_pairs
    from runtime.generation import postprocess

    spec = get_task(args.task)
    pairs = candidate_pairs(spec, load_examples(args.questions, args.outputs, task=spec.name),
                            args.profile_size)[:args.num_pairs]
    if len(pairs) < args.num_pairs:
        raise InputError(f"{args.questions}: only {len(pairs)} (question, item) pairs at --profile_size "
                         f"{args.profile_size}")
    handle = load_model(args.model_name, device="cpu")
    prompts = build_prompts(spec, [p.example for p in pairs], [[p.item] for p in pairs],
                            resolve_prompt_style("auto", handle), handle.tokenizer, 512)
    max_new_tokens = args.max_new_tokens or spec.max_new_tokens
    golds = [p.example.target for p in pairs]
    print(f"model {handle.name} on cpu, {torch.get_num_threads()} threads, {len(pairs)} pairs of {spec.name}, "
          f"max_new_tokens={max_new_tokens}")
    handle.generate(prompts[:2], max_new_tokens=4, batch_size=2, progress=False)       # warm-up

    started = time.perf_counter()
    reference = [handle.generate([prompt], max_new_tokens=max_new_tokens, num_beams=args.reference_num_beams,
                                 batch_size=1, progress=False)[0]
                 for prompt in prompts]
    reference_seconds = time.perf_counter() - started

    started = time.perf_counter()
    ours = handle.generate(prompts, max_new_tokens=max_new_tokens, num_beams=args.ours_num_beams,
                           batch_size=args.batch_size, progress=False)
    ours_seconds = time.perf_counter() - started

    metric = spec.best_metric
    rows = {"reference": (reference_seconds, reference, f"1 pair per call, beam {args.reference_num_beams}"),
            "ours": (ours_seconds, ours, f"batch {args.batch_size}, beam {args.ours_num_beams}")}
    result = {"pairs": len(pairs), "max_new_tokens": max_new_tokens}
    print(f"| way | decoding | seconds | pairs/s | mean {metric} |")
    print("|---|---|---|---|---|")
    for name, (seconds, outputs, decoding) in rows.items():
        value = compute_metrics(spec.name, [postprocess(spec, text) for text in outputs], golds, [metric])[metric]
        rate = len(pairs) / seconds
        print(f"| {name} | {decoding} | {seconds:.1f} | {rate:.3f} | {value:.4f} |")
        result[f"{name}_pairs_per_s"] = round(rate, 4)
        result[f"{name}_{metric}"] = round(value, 4)
    result["speedup"] = round(reference_seconds / ours_seconds, 2)
    result["reference_num_beams"], result["ours_num_beams"] = args.reference_num_beams, args.ours_num_beams
    print(f"speedup: {result['speedup']}x (target: at least 8x)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
