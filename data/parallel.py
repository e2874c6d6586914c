"""Ordered map over forked worker processes, shared by the evaluator's metrics and lamp_rag's BM25.

    from data.parallel import ordered_map
    for result in ordered_map(score_chunk, chunks, processes=2):   # results in the order of chunks
        ...

The first job always runs in the calling process: it loads whatever the jobs need (scorers, WordNet,
Arrow kernels), so the workers forked afterwards inherit it, and a missing resource raises there, cleanly.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def default_workers(workers: int | None = None) -> int:
    """``workers`` if given, else every core this process may use."""
    if workers is not None:
        return max(1, workers)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool_context() -> multiprocessing.context.BaseContext:
    # fork on Linux: workers start at once and inherit the parent's loaded libraries and data (spawn would
    # re-import them in every worker). Jobs handed to these workers must never use torch/OpenMP, whose
    # threads do not survive a fork.
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def forks_workers() -> bool:
    """Whether worker processes start as forks of this one (and so inherit its module globals)."""
    return pool_context().get_start_method() == "fork"


def ordered_map(function: Callable[[Job], Result], jobs: Sequence[Job], processes: int = 1) -> Iterator[Result]:
    """``function(job)`` for every job, in order; jobs after the first run in ``processes`` worker
    processes when ``processes`` > 1 (``function`` and the jobs must be picklable), else here."""
    if not jobs:
        return
    yield function(jobs[0])
    rest: Iterable[Job] = jobs[1:]
    if processes <= 1 or len(jobs) < 2:
        yield from map(function, rest)
        return
    # Unlike multiprocessing.Pool, which hangs when a worker dies, this raises BrokenProcessPool.
    pool = ProcessPoolExecutor(max_workers=min(processes, len(jobs) - 1), mp_context=pool_context())
    try:
        yield from pool.map(function, rest)
    finally:
        pool.shutdown(cancel_futures=True)
