"""What the two-mode decoding benchmarks (bench_two_view.py, bench_cope_cd.py) share: each measured run in a
fresh subprocess of the benchmark script, the fastest run of each mode, and the peak resident set size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from data.errors import InputError


def describe_run(figures: dict) -> str:
    """One measured run: tokens, time, speed, peak memory (and the forward calls, when counted)."""
    text = (f"{figures['tokens']} tokens in {figures['seconds']:6.1f} s = {figures['tokens_per_second']:6.1f} "
            f"tokens/s, peak RSS {figures['peak_rss_mb']:7.1f} MB")
    if "forward_calls" in figures:
        text += f", {figures['forward_calls']} forward calls over {figures['row_forwards']} rows in all"
    return text


def fastest_runs(script: str | Path, argv: Sequence[str], modes: Sequence[str], repeats: int) -> dict[str, dict]:
    """Run ``script ... --measure MODE`` ``repeats`` times per mode, modes alternating so outside load hits
    them alike; each run's figures are printed (:func:`describe_run`); the fastest run of each mode is returned."""
    from tqdm.auto import tqdm

    best: dict[str, dict] = {}
    for mode in tqdm([mode for _ in range(repeats) for mode in modes], desc="benchmark runs", unit="run"):
        figures = measure_in_subprocess(script, argv, mode)
        tqdm.write(f"{mode:>8}: {describe_run(figures)}")
        if mode not in best or figures["tokens_per_second"] > best[mode]["tokens_per_second"]:
            best[mode] = figures
    return best


def report_against_plain(header: dict, plain: dict, other: dict, other_mode: str) -> dict:
    """Print and return the summary: ``header``, each mode's speed and peak memory, and the ratios of
    ``other_mode`` over plain decoding (seconds per token and peak RSS), whose targets are 1.5 and 1.1."""
    summary = {**header,
               "plain_tokens_per_second": round(plain["tokens_per_second"], 2),
               f"{other_mode}_tokens_per_second": round(other["tokens_per_second"], 2),
               "plain_peak_rss_mb": round(plain["peak_rss_mb"], 1),
               f"{other_mode}_peak_rss_mb": round(other["peak_rss_mb"], 1),
               "time_ratio": round(plain["tokens_per_second"] / other["tokens_per_second"], 3),
               "memory_ratio": round(other["peak_rss_mb"] / plain["peak_rss_mb"], 3)}
    print(f"time_ratio {summary['time_ratio']} (target <= 1.5), memory_ratio {summary['memory_ratio']} "
          f"(target <= 1.1); the CPU is shared with other processes, so times vary between runs")
    print(json.dumps(summary))
    return summary


def measure_in_subprocess(script: str | Path, argv: Sequence[str], mode: str) -> dict:
    """The JSON figures that ``script ... --measure MODE`` prints on its last line."""
    command = [sys.executable, str(Path(script).resolve()), *argv, "--measure", mode]
    # glibc keeps freed heap memory mapped, so RSS would also count what its allocator happens to retain
    # (runs of one mode differed by 50-100 MB); a fixed mmap threshold returns freed tensors to the system,
    # and RSS then follows the live weights, KV caches and activations (repeat runs agree within ~2 MB).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(256 * 1024)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode == 2:   # bad input (e.g. the model), already one line from data.cli.run
        raise InputError(done.stderr.strip().splitlines()[-1].removeprefix("error: "))
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Peak resident set size (RSS), not tracemalloc (blind to torch's CPU allocator) nor the torch profiler
# (misses the weights already allocated): RSS holds the weights, KV caches and activations alike. The
# kernel's high-water mark is reset after loading and warm-up, so the peak is that of decoding alone;
# where the mark cannot be reset (no /proc), the lifetime peak (loading included) is used.
def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_kb() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
