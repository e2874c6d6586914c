"""Dense (contriever) ranking: the faiss flat inner-product index vs torch, and vs one question at a time.

    python bench/bench_dense.py                  # search: 2,000 questions x 100 items; sample: LaMP_4 dev
    python bench/bench_dense.py --quick
    python bench/bench_dense.py --questions_per_profile 8 --profile_size 1000

Two measurements. "search": the ranking step alone on seeded random 384-d vectors (a table lookup stands in
for the encoder), ``lamp_rag.retrieval.dense_orders`` with ``dense_index`` torch (one matrix-vector product
per question) and faiss (one IndexFlatIP per distinct profile, its questions searched together), once
with every profile distinct and once with K = 8 questions sharing each profile, as in time-based LaMP
splits and OPPU/CoPe users (--questions_per_profile). "sample": the whole contriever ranking of a sample questions file with the packaged MiniLM encoder:
the reference's way, one question at a time (encode its query and profile, dot products, sort), against
``rank_indices(..., "contriever")`` with each index (every distinct text encoded once, in batches across
questions). It prints questions/second, the ratios, and checks the orders: torch and faiss must give the
same order for every sample question, and on the random vectors no order may differ beyond float32
rounding (scores closer than 1e-5 relative can swap between the two kernels). The last line is JSON.
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

import numpy as np

from bench.quick import add_quick_argument, parse_bench_args
from data.cli import REPO_ROOT, add_task_argument, run
from data.errors import InputError

ROUNDING = 1e-5   # relative score gap below which float32 kernels may order two items either way


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_dense.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--questions", type=int, default=2000, help="search: questions (default: %(default)s)")
    parser.add_argument("--profile_size", type=int, default=100, help="search: items per profile (default: %(default)s)")
    parser.add_argument("--questions_per_profile", type=int, nargs="+", default=[1, 8],
                        help="search: questions sharing each profile, one measurement per value (default: 1 8)")
    parser.add_argument("--dim", type=int, default=384, help="search: vector size (default: %(default)s)")
    add_task_argument(parser, required=False)
    parser.set_defaults(task="LaMP_4")
    parser.add_argument("--split", default="dev", choices=("train", "dev"),
                        help="sample: which embedded sample questions file (default: %(default)s)")
    parser.add_argument("--sample_questions", type=int, default=None,
                        help="sample: first N questions of the file (default: all)")
    parser.add_argument("--encoder", default="default", help="sample: dense encoder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random vectors (default: %(default)s)")
    add_quick_argument(parser, questions=1000, sample_questions=12)
    return parser


class TableEncoder:
    """Stands in for an encoder: text "i" is row i of a fixed table."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts, **options):
        return self.table[[int(text) for text in texts]]


def search(args: argparse.Namespace, shared: int) -> dict:
    """The ranking step alone, torch vs faiss, with ``shared`` questions per profile."""
    import torch

    from lamp_rag.retrieval import dense_orders

    profiles = -(-args.questions // shared)
    table = torch.randn(args.questions + profiles * args.profile_size, args.dim,
                        generator=torch.Generator().manual_seed(args.seed))
    queries = [str(i) for i in range(args.questions)]
    first_document = args.questions
    corpora = [[str(first_document + (i // shared) * args.profile_size + j) for j in range(args.profile_size)]
               for i in range(args.questions)]
    encoder = TableEncoder(table)
    dense_orders(queries[:2], corpora[:2], encoder, dense_index="faiss")     # warm-up: imports
    seconds, orders = {}, {}
    for index in ("torch", "faiss"):
        started = time.perf_counter()
        orders[index] = dense_orders(queries, corpora, encoder, dense_index=index)
        seconds[index] = time.perf_counter() - started
    identical = sum(np.array_equal(a, b) for a, b in zip(orders["torch"], orders["faiss"]))
    beyond = 0
    for query, corpus, mine, theirs in zip(queries, corpora, orders["faiss"], orders["torch"]):
        scores = (table[[int(text) for text in corpus]] @ table[int(query)]).double().numpy()
        beyond += not np.allclose(scores[mine], scores[theirs], rtol=ROUNDING, atol=0)
    n = args.questions
    print(f"search, {n} questions x {args.profile_size} items ({shared} per profile), {args.dim}-d random vectors:")
    for index in ("torch", "faiss"):
        print(f"  {index:5s}: {seconds[index]:7.3f} s = {n / seconds[index]:9.1f} questions/s")
    print(f"  faiss {seconds['torch'] / seconds['faiss']:.2f}x torch; orders identical {identical}/{n}, "
          f"differing beyond float32 rounding: {beyond}")
    return {f"search_k{shared}_torch_qps": round(n / seconds["torch"], 1),
            f"search_k{shared}_faiss_qps": round(n / seconds["faiss"], 1),
            f"search_k{shared}_faiss_over_torch": round(seconds["torch"] / seconds["faiss"], 3),
            f"search_k{shared}_orders_identical": identical, f"search_k{shared}_orders_beyond_rounding": beyond}


def one_question_at_a_time(spec, examples, encoder) -> list[list[int]]:
    """The reference's loop: per question, encode its query and profile, dot products, best first."""
    from lamp_rag.retrieval import dense_order

    orders = []
    for example in examples:
        vectors = encoder.encode([spec.query(example.input), *(spec.document(item) for item in example.profile)])
        orders.append(dense_order((vectors[1:] @ vectors[0]).numpy()).tolist())
    return orders


def sample(args: argparse.Namespace) -> dict:
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.retrieval import rank_indices
    from lm import load_encoder

    spec = get_task(args.task)
    name = f"{args.split}_questions.json" if spec.benchmark == "LaMP" else f"{args.split.replace('dev', 'val')}.json"
    examples = load_examples(REPO_ROOT / "data" / "sample" / spec.name / name, task=spec.name,
                             limit=args.sample_questions)
    encoder = load_encoder(args.encoder, device="cpu")
    encoder.encode(["warm-up"])
    ways = {"reference": lambda: one_question_at_a_time(spec, examples, encoder)}
    for index in ("torch", "faiss"):
        ways[index] = lambda index=index: rank_indices(spec, examples, "contriever", encoder=encoder,
                                                       progress=False, dense_index=index)
    seconds, orders = {}, {}
    for way, rank in ways.items():
        started = time.perf_counter()
        orders[way] = rank()
        seconds[way] = time.perf_counter() - started
    n = len(examples)
    items = sum(len(example.profile) for example in examples)
    print(f"sample, {n} {spec.name} {args.split} questions ({items} profile items), encoder {args.encoder}:")
    for way in ways:
        print(f"  {way:9s}: {seconds[way]:7.2f} s = {n / seconds[way]:7.2f} questions/s")
    same = {way: sum(a == b for a, b in zip(orders[way], orders["faiss"])) for way in ("reference", "torch")}
    print(f"  faiss {seconds['reference'] / seconds['faiss']:.2f}x one question at a time, "
          f"{seconds['torch'] / seconds['faiss']:.2f}x torch; orders equal to faiss's: torch {same['torch']}/{n}, "
          f"reference {same['reference']}/{n} (the reference encodes in other batches: last-bit differences)")
    return {"sample_questions": n, "reference_qps": round(n / seconds["reference"], 2),
            "torch_qps": round(n / seconds["torch"], 2), "faiss_qps": round(n / seconds["faiss"], 2),
            "speedup": round(seconds["reference"] / seconds["faiss"], 3),
            "faiss_over_torch": round(seconds["torch"] / seconds["faiss"], 3),
            "sample_orders_torch_equal_faiss": same["torch"], "sample_orders_reference_equal_faiss": same["reference"]}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if min(args.questions, args.profile_size, *args.questions_per_profile, args.dim) < 1 or (
            args.sample_questions is not None and args.sample_questions < 1):
        raise InputError("--questions, --profile_size, --questions_per_profile, --dim and --sample_questions "
                         "must be at least 1")
    result = {"search_questions": args.questions, "profile_size": args.profile_size}
    for shared in args.questions_per_profile:
        result.update(search(args, shared))
    result.update(sample(args))
    beyond = sum(result[f"search_k{shared}_orders_beyond_rounding"] for shared in args.questions_per_profile)
    print(json.dumps(result))
    return 1 if beyond or result["sample_orders_torch_equal_faiss"] != result["sample_questions"] else 0


if __name__ == "__main__":
    raise SystemExit(run(main))
