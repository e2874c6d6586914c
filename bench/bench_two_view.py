"""Two-view decoding cost: greedy decoding with a LoRA adapter, plain vs two views (adapter vs base).

    python bench/bench_two_view.py                      # default model, 16 prompts x 64 new tokens
    python bench/bench_two_view.py --repeats 2 --threads 2

plain: lm's Hugging Face generate with the adapter active. two_view: lm.decoding with the adapter view as
expert and the base view as amateur (CoPe's contrastive combine), both views from one forward pass per
step over the doubled batch. The adapter has random non-zero weights (seeded), on q_proj and v_proj.
Each run is a fresh subprocess: peak memory is that process's resident set while it decodes.
Only real tokens count (through each row's first EOS). generate computes a batch's finished rows until
its last row ends; lm.decoding drops them, so the rows fed to the model ("row forwards") are printed too. Targets: time_ratio (seconds per token, two-view
over plain) at most 1.5, memory_ratio (peak RSS, two-view over plain) at most 1.1.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
from typing import Sequence

from bench.quick import add_model_arguments, add_quick_argument, apply_threads, bench_parser, parse_bench_args
from data.cli import run
from data.errors import InputError
from bench.decoding_benchmarks import fastest_runs, peak_rss_kb, report_against_plain, reset_peak_rss

MODES = ("plain", "two_view")
ADAPTER = "user"


def make_parser() -> argparse.ArgumentParser:
    parser = bench_parser(__file__, __doc__)
    add_model_arguments(parser, repeats_help="runs per mode, alternating modes")
    parser.add_argument("--max_new_tokens", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--batch_size", type=int, default=16, help="prompts per batch (default: %(default)s)")
    parser.add_argument("--lora_rank", type=int, default=8, help="default: %(default)s")
    parser.add_argument("--alpha", type=float, default=0.1,
                        help="contrastive alpha of the two-view combine (default: %(default)s)")
    parser.add_argument("--measure", choices=MODES, default=None,
                        help="internal: decode in this process in one mode and print its figures as JSON")
    add_quick_argument(parser, max_new_tokens=32)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if min(args.repeats, args.max_new_tokens, args.batch_size, args.lora_rank) < 1:
        raise InputError("--repeats, --max_new_tokens, --batch_size and --lora_rank must be at least 1")
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    best = fastest_runs(__file__, list(argv if argv is not None else sys.argv[1:]), MODES, args.repeats)
    plain, two_view = best["plain"], best["two_view"]
    report_against_plain({"model": plain["model"], "threads": plain["threads"], "prompts": plain["prompts"],
                          "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
                          "plain_row_forwards": plain["row_forwards"],
                          "two_view_row_forwards": two_view["row_forwards"]},
                         plain, two_view, "two_view")
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Decode every prompt once in args.measure mode; tokens, seconds and peak RSS while decoding."""
    import time
    from functools import partial

    from lm import BASE, ContrastiveCombine, LoraOptions, View, load_model, two_view_generate_ids  # before torch
    from lm.generation import generate_ids
    from bench.bench_generate import prompts
    import torch

    apply_threads(args)
    handle = load_model(args.model_name, device="cpu")
    torch.manual_seed(0)
    # zero_init=False: random A and B, so the adapter changes the logits (B=0 would not).
    handle.add_adapter(ADAPTER, LoraOptions(r=args.lora_rank, alpha=args.lora_rank,
                                            target_modules=["q_proj", "v_proj"], zero_init=False))
    handle.activate_adapter(ADAPTER)
    if args.measure == "plain":
        decode = partial(generate_ids, handle)
    else:
        decode = partial(two_view_generate_ids, View(handle, ADAPTER), View(handle, BASE),
                         combine=ContrastiveCombine(alpha=args.alpha))
    texts = prompts()
    decode(texts[:2], max_new_tokens=4, batch_size=2, progress=False)   # warm-up, untimed
    # Rows of every forward call: generate computes finished rows on, lm.decoding drops them.
    rows_fed = []
    handle.model.get_base_model().register_forward_hook(
        lambda module, inputs, kwargs, output: rows_fed.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    reset_peak_rss()
    started = time.perf_counter()
    token_ids = decode(texts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(ids) for ids in token_ids)
    return {"mode": args.measure, "model": handle.name, "threads": torch.get_num_threads(), "prompts": len(texts),
            "tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
            "forward_calls": len(rows_fed), "row_forwards": sum(rows_fed),
            "peak_rss_mb": peak_rss_kb() / 1024}


if __name__ == "__main__":
    raise SystemExit(run(main))
