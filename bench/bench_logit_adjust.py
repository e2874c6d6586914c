"""Generation time with vs without the user-bias logits processor, on the same prompts.

    python bench/bench_logit_adjust.py                     # default model, 8 prompts, batch 8, 32 tokens, greedy
    python bench/bench_logit_adjust.py --max_new_tokens 128 --repeats 5 --token_map unigram

Both runs suppress EOS so every prompt generates exactly --max_new_tokens tokens, and they alternate
(without, with, without, ...) after one warm-up each, so drifting machine load hits both alike; the
median of each is compared, as wall-clock time and as this process's CPU time (the steadier measure on a
machine shared with other jobs). The one-off per-user bias table is timed separately.
Target: overhead <= 10%. The last line is JSON (time_ratio: with over without, wall clock).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import statistics
import time
from typing import Sequence

from bench.quick import add_model_arguments, add_quick_argument, apply_threads, bench_parser, parse_bench_args
from data.cli import add_task_argument, run
from logit_adjust.main import add_user_bias_arguments

TARGET_OVERHEAD = 0.10
STEP_CALLS = 200


def make_parser() -> argparse.ArgumentParser:
    parser = bench_parser(__file__, __doc__)
    add_task_argument(parser, required=False)
    parser.set_defaults(task="LongLaMP_2")
    # One thread by default: timings stay steady on a machine shared with other jobs.
    add_model_arguments(parser, repeats=3, repeats_help="timed runs of each", threads=1)
    add_user_bias_arguments(parser)
    parser.add_argument("--beta", type=float, default=1.0, help="(default: %(default)s)")
    parser.add_argument("--num_prompts", type=int, default=8, help="sample questions used (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=8, help="(default: %(default)s)")
    parser.add_argument("--max_new_tokens", type=int, default=32, help="(default: %(default)s)")
    add_quick_argument(parser, repeats=2, max_new_tokens=16)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    import torch
    from transformers import SuppressTokensLogitsProcessor

    from data.loaders import load_examples
    from data.tasks import get_task
    from lm import load_encoder, load_model
    from lm.generation import generate_ids
    from logit_adjust.experiment import require_generation_task, sample_paths
    from logit_adjust.processor import UserBiasFactory
    from logit_adjust.token_maps import special_token_ids, user_biases
    from logit_adjust.user_vectors import user_profile

    spec = get_task(args.task)
    require_generation_task(spec)
    examples = load_examples(*sample_paths(spec), task=spec.name, limit=args.num_prompts)
    handle = load_model(args.model_name, device="cpu")
    encoder = load_encoder(args.encoder, device="cpu") if args.token_map == "sbert_vocab" else None
    profiles = [user_profile(spec, example) for example in examples]
    started = time.perf_counter()
    biases = user_biases(args.token_map, handle.tokenizer, profiles, encoder=encoder, background=profiles)
    precompute = time.perf_counter() - started

    prompts = [example.input for example in examples]
    stop_ids = special_token_ids(handle.tokenizer, handle.model)
    no_stop = SuppressTokensLogitsProcessor(stop_ids, device=handle.device)
    personalize = UserBiasFactory(biases, list(range(len(prompts))), args.beta, stop_ids)
    variants = {"without": lambda batch: [no_stop], "with": lambda batch: [no_stop, personalize(batch)]}

    def timed(name: str, max_new_tokens: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        ids = generate_ids(handle, prompts, max_new_tokens=max_new_tokens, batch_size=args.batch_size,
                           logits_processor=variants[name], progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if any(len(row) != max_new_tokens for row in ids):
            raise RuntimeError("a prompt stopped early: the runs would not generate the same number of tokens")
        return wall, cpu

    apply_threads(args)
    for name in variants:
        timed(name, 4)                                     # warm-up
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name in variants:
            runs[name].append(timed(name, args.max_new_tokens))
    tokens = len(prompts) * args.max_new_tokens
    print(f"{handle.name}: {len(prompts)} prompts, batch {args.batch_size}, greedy, {args.max_new_tokens} new tokens "
          f"each, {args.token_map} beta {args.beta:g}, {torch.get_num_threads()} threads, median of {args.repeats}")
    ratios = {}
    for clock, column in (("wall", 0), ("cpu", 1)):
        without, with_bias = (statistics.median(run[column] for run in runs[name]) for name in ("without", "with"))
        overhead = with_bias / without - 1
        ratios[clock] = with_bias / without
        print(f"{clock:4s} time without processor: {without:7.2f} s ({tokens / without:6.1f} tokens/s)  "
              f"runs {_fmt([run[column] for run in runs['without']])}")
        print(f"{clock:4s} time with processor:    {with_bias:7.2f} s ({tokens / with_bias:6.1f} tokens/s)  "
              f"runs {_fmt([run[column] for run in runs['with']])}")
        print(f"{clock:4s} overhead: {overhead:+.1%} (target <= {TARGET_OVERHEAD:.0%}: "
              f"{'met' if overhead <= TARGET_OVERHEAD else 'NOT met'})")
    # The processor alone on one step's scores: a load-independent bound on its share of a decoding step.
    processor = personalize(list(range(min(args.batch_size, len(prompts)))))
    scores = torch.randn(len(processor.bias), handle.model.config.vocab_size)
    processor(None, scores)
    started = time.perf_counter()
    for _ in range(STEP_CALLS):
        processor(None, scores)
    per_step = (time.perf_counter() - started) / STEP_CALLS
    model_step = statistics.median(run[0] for run in runs["without"]) / (
        args.max_new_tokens * -(-len(prompts) // args.batch_size))
    print(f"processor alone: {per_step * 1e3:.3f} ms per step on {tuple(scores.shape)} scores "
          f"= {per_step / model_step:.2%} of a median decoding step ({model_step * 1e3:.1f} ms wall)")
    print(f"one-off bias table for {len(profiles)} users: {precompute:.2f} s (token embeddings and user vectors "
          f"come from the disk cache after the first run)")
    print(json.dumps({"prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "token_map": args.token_map,
                      "threads": torch.get_num_threads(), "repeats": args.repeats,
                      "time_ratio": round(ratios["wall"], 3), "cpu_time_ratio": round(ratios["cpu"], 3),
                      "processor_ms_per_step": round(per_step * 1e3, 4), "bias_table_s": round(precompute, 2)}))
    return 0


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    raise SystemExit(run(main))
