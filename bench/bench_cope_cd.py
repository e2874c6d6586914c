"""CoPe's contrastive decoding cost: the same user adapter decoded plain vs contrasted with the TAM.

    python bench/bench_cope_cd.py                       # default model, 16 sample queries x 32 new tokens
    python bench/bench_cope_cd.py --repeats 2 --max_new_tokens 64

Both modes run cope.pipeline.decode_user, the code path of cope.oppu_sft inference, on the LaMP_4 sample's
dev queries in CoPe's chat prompt: plain = greedy with the user's LoRA adapter (CoPe's shape, r 8 on q,v,
seeded random non-zero weights so it changes the logits); cd = --is_cd, the adapter against the same model
with the adapter off (lm.decoding two-view, one forward per step over the doubled batch). Each run is a fresh
subprocess; tokens are the raw new texts (before the runtime's first-line cut) re-tokenized; peak memory is the resident set while decoding
(bench/decoding_benchmarks.py). Targets: time_ratio (seconds per token, cd over plain) <= 1.5,
memory_ratio (peak RSS, cd over plain) <= 1.1.
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

MODES = ("plain", "cd")
SAMPLE_QUERIES = Path(__file__).resolve().parent.parent / "data" / "sample" / "LaMP_4" / "dev_questions.json"


def make_parser() -> argparse.ArgumentParser:
    parser = bench_parser(__file__, __doc__)
    add_model_arguments(parser, repeats_help="runs per mode, alternating")
    parser.add_argument("--queries", type=Path, default=SAMPLE_QUERIES, help="LaMP_4 questions file "
                        "(default: the embedded sample's dev split)")
    parser.add_argument("--num_queries", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--batch_size", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--alpha", type=float, default=0.1, help="contrastive alpha (default: %(default)s)")
    parser.add_argument("--measure", choices=MODES, default=None, help="internal: one mode in this process")
    add_quick_argument(parser, num_queries=8, max_new_tokens=32, batch_size=8)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if min(args.repeats, args.max_new_tokens, args.batch_size, args.num_queries) < 1:
        raise InputError("--repeats, --max_new_tokens, --batch_size and --num_queries must be at least 1")
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    best = fastest_runs(__file__, list(argv if argv is not None else sys.argv[1:]), MODES, args.repeats)
    plain, cd = best["plain"], best["cd"]
    report_against_plain({"model": plain["model"], "threads": plain["threads"], "queries": plain["queries"],
                          "max_new_tokens": args.max_new_tokens, "alpha": args.alpha, "repeats": args.repeats},
                         plain, cd, "cd")
    return 0


def measure(args: argparse.Namespace) -> dict:
    import time

    from cope.data import User
    from cope.options import DecodingSettings
    from cope.pipeline import USER_ADAPTER, USER_LORA, decode_user
    from data.loaders import load_examples
    from data.tasks import get_task
    from lm import load_model
    from lm.adapters import LoraOptions
    import torch

    apply_threads(args)
    spec = get_task("LaMP_4")
    queries = load_examples(args.queries, task=spec.name)[:args.num_queries]
    user = User("bench", [], queries)
    handle = load_model(args.model_name, device="cpu", backend="hf")
    torch.manual_seed(0)
    handle.add_adapter(USER_ADAPTER, LoraOptions(**{**USER_LORA, "zero_init": False}))
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens, inference_batch_size=args.batch_size,
                                is_cd=args.measure == "cd", contrastive_alpha=args.alpha)
    warm_up = DecodingSettings(max_new_tokens=2, inference_batch_size=2)
    decode_user(handle, spec, User("warm-up", [], queries[:2]), warm_up, 0, decoding.is_cd)
    reset_peak_rss()
    started = time.perf_counter()
    outputs = decode_user(handle, spec, user, decoding, 0, decoding.is_cd, clean=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(ids) for ids in handle.tokenizer(list(outputs.values()), add_special_tokens=False)["input_ids"])
    return {"mode": args.measure, "model": handle.name, "threads": torch.get_num_threads(), "queries": len(queries),
            "tokens": tokens,
            "seconds": seconds, "tokens_per_second": tokens / seconds, "peak_rss_mb": peak_rss_kb() / 1024}


if __name__ == "__main__":
    raise SystemExit(run(main))
