"""16 users' LoRA adapters on one base model: one mixed batch versus one adapter at a time.

    python bench/bench_adapters.py                      # default model, 16 users, 32 new tokens
    python bench/bench_adapters.py --max_new_tokens 64 --repeats 3 --threads 2

Every user gets an adapter with random non-zero LoRA B weights (so the adapters really differ) on the
q/v projections of ONE copy of the base model. "mixed" generates the 16 users' prompts greedily in one
batch where row i uses user i's adapter (PEFT's per-row adapter_names); "one at a time" generates each
user's prompt alone with its adapter; "base batch" is the same batch without adapters, for the
overhead of the per-row adapters. Only real generated tokens count (through the first EOS); one
untimed warm-up call runs first; the best of --repeats is reported. The last line is one JSON object.
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


def make_parser() -> argparse.ArgumentParser:
    parser = bench_parser(__file__, __doc__)
    add_model_arguments(parser, repeats_help="timed runs of each way")
    parser.add_argument("--users", type=int, default=16, help="users = adapters = prompts (default: %(default)s)")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--lora_r", type=int, default=8, help="LoRA rank of every adapter (default: %(default)s)")
    add_quick_argument(parser, users=8, max_new_tokens=16)
    return parser


def user_prompts(count: int) -> list[str]:
    from bench.bench_generate import prompts    # the same 16 headline prompts as bench_generate

    topics = prompts()
    return [topics[user % len(topics)] for user in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if min(args.users, args.repeats, args.max_new_tokens, args.lora_r) < 1:
        raise InputError("--users, --repeats, --max_new_tokens and --lora_r must be at least 1")
    import torch
    from tqdm.auto import tqdm

    from lm import LoraOptions, load_model
    from lm.generation import generate_ids

    apply_threads(args)
    handle = load_model(args.model_name, device="cpu", backend="hf")
    users = [f"user_{user:02d}" for user in range(args.users)]
    torch.manual_seed(0)
    for user in tqdm(users, desc="adapters", unit="user"):
        handle.add_adapter(user, LoraOptions(r=args.lora_r, zero_init=False))
    prompts = user_prompts(args.users)
    print(f"model {handle.name} on cpu, {torch.get_num_threads()} threads, {args.users} users' adapters "
          f"(LoRA r={args.lora_r}, random B) on one base, greedy, max_new_tokens={args.max_new_tokens}")
    options = dict(max_new_tokens=args.max_new_tokens, progress=False)
    generate_ids(handle, prompts[:2], adapter_names=users[:2], batch_size=2, **options)   # warm-up

    def mixed():
        return generate_ids(handle, prompts, adapter_names=users, batch_size=len(prompts), **options)

    def one_at_a_time():
        return [generate_ids(handle, [prompt], adapter_names=[user], batch_size=1, **options)[0]
                for prompt, user in zip(prompts, users)]

    def base_batch():
        return generate_ids(handle, prompts, batch_size=len(prompts), **options)

    rates, outputs = {}, {}
    for repeat in range(1, args.repeats + 1):
        # the ways alternate within each repeat, so load from other processes hits them alike
        for name, way in (("mixed", mixed), ("one_at_a_time", one_at_a_time), ("base_batch", base_batch)):
            started = time.perf_counter()
            token_ids = way()
            seconds = time.perf_counter() - started
            tokens = sum(len(ids) for ids in token_ids)
            rates[name] = max(rates.get(name, 0.0), tokens / seconds)
            outputs[name] = token_ids
            print(f"repeat {repeat} {name:>13}: {tokens} tokens in {seconds:6.1f} s = {tokens / seconds:6.1f} tokens/s")
    same = sum(a == b for a, b in zip(outputs["mixed"], outputs["one_at_a_time"]))
    changed = sum(a != b for a, b in zip(outputs["mixed"], outputs["base_batch"]))
    speedup = rates["mixed"] / rates["one_at_a_time"]
    overhead = rates["base_batch"] / rates["mixed"]
    print(f"mixed batch {rates['mixed']:.1f} vs one adapter at a time {rates['one_at_a_time']:.1f} tokens/s: "
          f"{speedup:.2f}x; plain base batch {rates['base_batch']:.1f} tokens/s ({overhead:.2f}x the mixed batch)")
    print(f"outputs: {same} of {args.users} identical between the mixed batch and one at a time; "
          f"{changed} of {args.users} changed by their adapter (differ from the base model's)")
    print(json.dumps({"users": args.users, "max_new_tokens": args.max_new_tokens, "lora_r": args.lora_r,
                      "threads": torch.get_num_threads(),
                      "mixed_tokens_per_s": round(rates["mixed"], 2),
                      "one_at_a_time_tokens_per_s": round(rates["one_at_a_time"], 2),
                      "speedup": round(speedup, 3), "base_batch_tokens_per_s": round(rates["base_batch"], 2),
                      "base_over_mixed": round(overhead, 3), "identical_outputs": same, "changed_by_adapter": changed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
