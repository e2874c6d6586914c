"""Run one command and write what it cost: ``python -m leaderboard.measure RESULT.json -- COMMAND...``.

RESULT.json gets {"returncode", "wall_seconds", "peak_mb"}; the exit code is the command's. The leaderboard's
runner starts every step through this small process because the kernel's peak-memory figure of a process
(``ru_maxrss``) carries over the memory of the process it was forked from: forked from the leaderboard (eval
and numpy loaded) a tiny step would report the leaderboard's size, forked from this wrapper it reports its own.

The peak is the larger of two measures of the command's process tree: ``getrusage(RUSAGE_CHILDREN)``, the
kernel's exact peak of the largest process in it (every descendant that was waited for, a spike between
samples included), and the largest sum of the resident sizes of its live processes sampled every 0.2 s with
psutil (processes running side by side, e.g. worker pools).
"""
from __future__ import annotations

import resource
import subprocess
import sys
import threading
import time

import psutil

from data.io import atomic_write_json

SAMPLE_SECONDS = 0.2


def tree_rss(process: psutil.Process) -> int:
    """The summed resident size of a process and all its descendants (0 once it is gone)."""
    total = 0
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for each in family:
        try:
            total += each.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(command: list[str]) -> dict:
    started = time.monotonic()
    try:
        process = subprocess.Popen(command)
    except OSError as error:
        print(f"error: cannot start {command[0]}: {error.strerror}", file=sys.stderr)
        return {"returncode": 127, "wall_seconds": 0.0, "peak_mb": 0.0}
    peak_sum = 0
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak_sum
        watched = psutil.Process(process.pid)
        while not finished.wait(SAMPLE_SECONDS):
            peak_sum = max(peak_sum, tree_rss(watched))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        returncode = process.wait()
    except KeyboardInterrupt:          # the command got the same Ctrl-C: let it stop, then stop too
        returncode = process.wait()
    finished.set()
    sampler.join()
    peak_bytes = max(peak_sum, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)  # KiB on Linux
    return {"returncode": returncode, "wall_seconds": round(time.monotonic() - started, 3),
            "peak_mb": round(peak_bytes / 2**20, 1)}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m leaderboard.measure RESULT.json -- COMMAND...", file=sys.stderr)
        return 2
    result = measure(argv[2:])
    atomic_write_json(argv[0], result)
    code = result["returncode"]
    return code if code >= 0 else 128 - code        # killed by a signal: the shell's convention


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
