"""Throughput of lamp_rag's vectorized BM25 against rank_bm25 0.2.2 built per question (the reference).

    python bench/bench_rank_bm25.py                      # 2,000 questions x 100-item profiles, synthetic text
    python bench/bench_rank_bm25.py --text gitlamp       # real commit text (../shared/data/gitlamp)
    python bench/bench_rank_bm25.py --questions 200      # a quick run
    python bench/bench_rank_bm25.py --questions_per_profile 8   # users asking several questions

Reference, per question: ``BM25Okapi([d.split() for d in profile]).get_scores(query.split())`` and
``np.argsort(scores)[::-1]``, the order of rank_profiles / get_top_n. Ours: ``lamp_rag.retrieval.bm25_scores``
and ``bm25_order`` on the same texts, in worker processes on every core (``--workers 1``: one process;
CPU time counts the workers). Both timings include tokenization. Synthetic text is deterministic:
Zipf-distributed words (some capitalized or followed by "," / ".") from a seeded vocabulary, 20-150 tokens
per document and 30-150 per query, like LaMP_4/5 articles and abstracts; --text gitlamp samples each
profile from the ~9,000 real gitlamp commits (texts repeat across profiles, profiles do not). It prints both
throughputs (questions/second, wall and CPU time), the speedup, and checks the orders (last line: JSON): the number of
questions whose order differs from the reference's beyond exact score ties must be 0.
--questions_per_profile K gives groups of K questions one profile, as in time-based LaMP splits and
OPPU/CoPe user files: ours tokenizes each distinct profile once, the reference rebuilds it per question.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import time
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from bench.quick import add_quick_argument, parse_bench_args
from data.cli import REPO_ROOT, add_workers_argument, run
from data.errors import InputError
from data.parallel import default_workers
from lamp_rag.retrieval import bm25_order, bm25_scores

GITLAMP = REPO_ROOT.parent / "shared" / "data" / "gitlamp"
VOCABULARY_SIZE = 30_000
ZIPF_EXPONENT = 1.1
VARIANTS = ("{}", "{},", "{}.", "{}")          # plain, comma, full stop, capitalized (see _vocabulary)
VARIANT_WEIGHTS = (0.8, 0.08, 0.07, 0.05)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_rank_bm25.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=2000, help="questions (default: %(default)s)")
    parser.add_argument("--profile_size", type=int, default=100, help="items per profile (default: %(default)s)")
    parser.add_argument("--text", choices=("synthetic", "gitlamp"), default="synthetic",
                        help="synthetic seeded text, or profiles sampled from the real gitlamp commits")
    parser.add_argument("--questions_per_profile", type=int, default=1,
                        help="questions sharing each profile (default: %(default)s, every profile distinct)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the texts (default: %(default)s)")
    add_workers_argument(parser, "lamp_rag's bm25 (the reference is single-process)")
    add_quick_argument(parser, questions=1000)
    return parser


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Every word in its four variants (index = word * 4 + variant) as an object array."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, size)) for size in rng.integers(1, 11, VOCABULARY_SIZE)]
    return np.array([variant.format(word.capitalize() if i == 3 else word)
                     for word in words for i, variant in enumerate(VARIANTS)], dtype=object)


def synthetic_texts(questions: int, profile_size: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = np.random.default_rng(seed)
    vocabulary = _vocabulary(rng)
    word_weights = 1.0 / np.arange(1, VOCABULARY_SIZE + 1) ** ZIPF_EXPONENT
    weights = np.outer(word_weights / word_weights.sum(), VARIANT_WEIGHTS).ravel()

    def texts(lengths: np.ndarray) -> list[str]:
        tokens = vocabulary[rng.choice(len(vocabulary), int(lengths.sum()), p=weights)]
        ends = np.cumsum(lengths)
        return [" ".join(tokens[end - length:end]) for end, length in zip(ends, lengths)]

    queries = texts(rng.integers(30, 151, questions))
    documents = texts(rng.integers(20, 151, questions * profile_size))
    return queries, [documents[i * profile_size:(i + 1) * profile_size] for i in range(questions)]


def gitlamp_texts(questions: int, profile_size: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """gitlamp articles (users cycled) as queries; each profile a seeded sample of all gitlamp commits."""
    from data.tasks import get_task

    spec = get_task("LaMP_4")
    if not GITLAMP.is_dir():
        raise InputError(f"{GITLAMP}: gitlamp data not found; use --text synthetic")
    articles, commits = [], []
    for split in ("train", "dev", "test"):
        for question in json.loads((GITLAMP / f"{split}_questions.json").read_text(encoding="utf-8")):
            articles.append(spec.query(question["input"]))
            commits.extend(spec.document(item) for item in question["profile"])
    rng = np.random.default_rng(seed)
    corpora = [[commits[j] for j in rng.choice(len(commits), profile_size, replace=False)] for _ in range(questions)]
    return [articles[i % len(articles)] for i in range(questions)], corpora


def reference(queries: Sequence[str], corpora: Sequence[Sequence[str]]) -> tuple[list[np.ndarray], list]:
    from rank_bm25 import BM25Okapi

    scores, orders = [], []
    for query, corpus in zip(tqdm(queries, desc="rank_bm25", unit="q"), corpora):
        result = BM25Okapi([document.split() for document in corpus]).get_scores(query.split())
        scores.append(result)
        orders.append(np.argsort(result)[::-1])
    return scores, orders


def ours(queries: Sequence[str], corpora: Sequence[Sequence[str]],
         workers: int | None = None) -> tuple[list[np.ndarray], list]:
    scores = bm25_scores(queries, corpora, workers=workers, progress=True)
    return scores, [bm25_order(result) for result in scores]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


CPU_TICK = 0.01   # os.times() resolution: a shorter CPU time reads as 0 and is counted as one tick


def timed(function, *args):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function(*args)
    return result, time.perf_counter() - wall, max(cpu_seconds() - cpu, CPU_TICK)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bench_args(make_parser(), argv)
    if min(args.questions, args.profile_size, args.questions_per_profile) < 1:
        raise InputError("--questions, --profile_size and --questions_per_profile must be at least 1")
    started = time.perf_counter()
    if args.text == "gitlamp":
        queries, corpora = gitlamp_texts(args.questions, args.profile_size, args.seed)
    else:
        queries, corpora = synthetic_texts(args.questions, args.profile_size, args.seed)
    shared = args.questions_per_profile
    corpora = [corpora[i - i % shared] for i in range(len(corpora))]
    tokens = sum(len(document.split()) for corpus in corpora for document in corpus)
    print(f"{args.questions} questions x {args.profile_size} items of {args.text} text "
          f"({tokens / args.questions:.0f} profile tokens per question, {shared} question(s) per profile), "
          f"built in {time.perf_counter() - started:.1f} s")
    ours(queries[:2], corpora[:2])        # warm-up: imports and Arrow kernels, outside the timings

    (ref_scores, ref_orders), ref_wall, ref_cpu = timed(reference, queries, corpora)
    (our_scores, our_orders), our_wall, our_cpu = timed(ours, queries, corpora, args.workers)

    identical_scores = sum(np.array_equal(a, b) for a, b in zip(our_scores, ref_scores))
    identical_orders = sum(np.array_equal(a, b) for a, b in zip(our_orders, ref_orders))
    # An order differs beyond ties if the reference scores, read in our order, are not the sorted ones.
    beyond_ties = sum(not np.array_equal(s[mine], s[theirs])
                      for s, mine, theirs in zip(ref_scores, our_orders, ref_orders))
    n = args.questions
    print(f"rank_bm25 (reference): {n / ref_wall:9.1f} questions/s wall, {n / ref_cpu:9.1f} questions/s CPU")
    print(f"lamp_rag.retrieval   : {n / our_wall:9.1f} questions/s wall, {n / our_cpu:9.1f} questions/s CPU "
          f"({default_workers(args.workers)} worker process(es) at most)")
    print(f"speedup: {ref_wall / our_wall:.1f}x wall, {ref_cpu / our_cpu:.1f}x CPU")
    print(f"scores bit-identical: {identical_scores}/{n}; orders identical: {identical_orders}/{n}; "
          f"orders differing beyond exact score ties: {beyond_ties}")
    print(json.dumps({"questions": n, "profile_size": args.profile_size, "text": args.text,
                      "questions_per_profile": shared, "workers": default_workers(args.workers),
                      "reference_qps": round(n / ref_wall, 1), "ours_qps": round(n / our_wall, 1),
                      "speedup": round(ref_wall / our_wall, 2), "cpu_speedup": round(ref_cpu / our_cpu, 2),
                      "scores_identical": identical_scores, "orders_identical": identical_orders,
                      "orders_beyond_ties": beyond_ties}))
    return 1 if beyond_ties else 0


if __name__ == "__main__":
    raise SystemExit(run(main))
