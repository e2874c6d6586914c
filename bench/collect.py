"""Run every benchmark of bench/ and write bench/results.md: one table row per benchmark (the command, its key
figures and its ratio against its reference, from the JSON object on its last line), with the date, the git
commit, the machine (cores, CPU model) and the load average before and after, since the machine may be shared.

    bash bench/run_all.sh [--quick]            # the same as: python -m bench.collect [--quick]
    python -m bench.collect --only bench_dense bench_kmeans --output /tmp/results.md

A benchmark that fails (non-zero exit, no JSON on its last line, or over --timeout) gets a row saying so,
with the last line of its error output; the others still run. Each benchmark's output goes to
``<log_dir>/<name>.log`` and its outcome to ``<log_dir>/<name>.json``: a rerun after an interruption reuses
the outcomes of finished benchmarks of the same command and commit (``--rerun`` runs everything again).
The results file is written atomically, with its arguments in ``<output>.config.json``.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from data.cli import REPO_ROOT, config_path, git_commit, parse_args, run, writable_dir, writable_file, write_config
from data.fingerprint import fingerprint
from data.io import atomic_write_json, atomic_write_text

STDERR_TAIL = 20   # lines of a failed benchmark's error output kept in its outcome


@dataclass(frozen=True)
class Benchmark:
    name: str                # bench/<name>.py
    what: str                # the hot path and its reference
    ratio_key: str           # the JSON key holding the ratio against the reference
    ratio_means: str         # what that ratio divides
    figures: tuple[str, ...]  # JSON keys shown as key figures
    script: str = ""         # default: bench/<name>.py, run from the repository root

    def command(self, quick: bool) -> list[str]:
        return ["python", self.script or f"bench/{self.name}.py", *(["--quick"] if quick else [])]


BENCHMARKS = (
    Benchmark("bench_rank_bm25", "BM25 ranking vs rank_bm25 built per question", "speedup",
              "ours / rank_bm25, questions/s (wall)", ("reference_qps", "ours_qps", "orders_beyond_ties")),
    Benchmark("bench_dense", "dense ranking: faiss vs torch vs one question at a time", "speedup",
              "faiss ranking / one question at a time (sample, MiniLM), questions/s",
              ("reference_qps", "torch_qps", "faiss_qps", "search_k1_faiss_over_torch", "search_k8_faiss_over_torch",
               "search_k1_orders_beyond_rounding", "search_k8_orders_beyond_rounding",
               "sample_orders_torch_equal_faiss")),
    Benchmark("bench_generate", "batched vs one-at-a-time generation", "speedup",
              "batch 16 / batch 1, tokens/s", ("batch_1_tokens_per_s", "batch_16_tokens_per_s")),
    Benchmark("bench_two_view", "two-view (contrastive) vs plain decoding", "time_ratio",
              "two-view / plain, seconds per token (target <= 1.5)",
              ("plain_tokens_per_second", "two_view_tokens_per_second", "memory_ratio")),
    Benchmark("bench_cope_cd", "CoPe contrastive vs plain decoding of a user adapter", "time_ratio",
              "contrastive / plain, seconds per token (target <= 1.5)",
              ("plain_tokens_per_second", "cd_tokens_per_second", "memory_ratio")),
    Benchmark("bench_adapters", "mixed adapters in one batch vs one adapter at a time", "speedup",
              "mixed batch / one at a time, tokens/s", ("mixed_tokens_per_s", "one_at_a_time_tokens_per_s",
                                                        "identical_outputs")),
    Benchmark("bench_utilization", "utilization scoring batched vs the reference's one pair at a time",
              "speedup", "batched / one pair per call with 4 beams, pairs/s (target >= 8)",
              ("reference_pairs_per_s", "ours_pairs_per_s")),
    Benchmark("bench_kmeans", "balanced k-means: vectorized vs the per-cluster loop", "speedup",
              "loop / vectorized, seconds per iteration", ("vectorized_s_per_iter", "loop_s_per_iter",
                                                           "same_assignments")),
    Benchmark("bench_eval", "evaluation throughput (ROUGE + METEOR)", "speedup",
              "all worker processes / one, predictions/s", ("serial_predictions_per_s",
                                                            "parallel_predictions_per_s", "identical")),
    Benchmark("bench_logit_adjust", "logit adjustment processor overhead", "time_ratio",
              "with / without the user-bias processor, wall time (target <= 1.1)",
              ("cpu_time_ratio", "processor_ms_per_step")),
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.collect", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="every benchmark with --quick (about 10-15 minutes)")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], metavar="NAME",
                        help="run only these benchmarks (default: all)")
    parser.add_argument("--output", type=writable_file, default=REPO_ROOT / "bench" / "results.md",
                        help="results table to write (default: bench/results.md)")
    parser.add_argument("--log_dir", type=writable_dir, default=REPO_ROOT / "runs" / "bench",
                        help="each benchmark's output and outcome (default: runs/bench)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default: %(default)s)")
    parser.add_argument("--rerun", action="store_true", help="run every benchmark again, even finished ones")
    return parser


def run_benchmark(command: Sequence[str], log: Path, timeout: float) -> dict:
    """Run one benchmark from the repository root, its output to ``log``; its outcome:
    ``{"returncode", "seconds", "result" (the JSON of its last line, or None), "error"}``."""
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as output:
        try:
            done = subprocess.run(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, timeout=timeout)
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as expired:
            returncode, stdout, stderr = None, _text(expired.stdout), _text(expired.stderr)
        output.write(stdout + "\n--- stderr ---\n" + stderr)
    lines = stdout.strip().splitlines()
    result = _json_object(lines[-1]) if lines else None
    error = None
    if returncode is None:
        error = f"timed out after {timeout:g} s"
    elif returncode != 0:
        error = f"exit {returncode}: " + (_last_line(stderr) or "no error output")
    elif result is None:
        error = "no JSON object on its last line"
    return {"returncode": returncode, "seconds": round(time.perf_counter() - started, 1), "result": result,
            "error": error, "stderr_tail": stderr.strip().splitlines()[-STDERR_TAIL:]}


def _text(output) -> str:
    return output.decode("utf-8", "replace") if isinstance(output, bytes) else (output or "")


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _last_line(text: str) -> str:
    # progress bars redraw with carriage returns: the last line is the last non-empty piece
    pieces = [piece.strip() for piece in text.replace("\r", "\n").splitlines() if piece.strip()]
    return pieces[-1] if pieces else ""


def run_all(benchmarks: Sequence[Benchmark], quick: bool, log_dir: Path, timeout: float,
            rerun: bool = False) -> list[dict]:
    """Every benchmark's row: name, what, command, outcome (see :func:`run_benchmark`), reused or not."""
    from tqdm.auto import tqdm

    log_dir.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    rows = []
    for benchmark in (bar := tqdm(benchmarks, desc="benchmarks", unit="benchmark")):
        bar.set_postfix_str(benchmark.name)
        command = benchmark.command(quick)
        key = fingerprint({"command": command, "commit": commit})
        saved = log_dir / f"{benchmark.name}.json"
        outcome = _read_outcome(saved)
        reused = not rerun and outcome is not None and outcome.get("key") == key and not outcome["error"]
        if not reused:
            outcome = {"key": key, **run_benchmark(command, log_dir / f"{benchmark.name}.log", timeout)}
            atomic_write_json(saved, outcome)
        line = json.dumps(outcome["result"]) if outcome["result"] is not None else outcome["error"]
        tqdm.write(f"{benchmark.name} ({outcome['seconds']} s{', reused' if reused else ''}): {line}")
        rows.append({"benchmark": benchmark, "command": " ".join(command), "reused": reused, **outcome})
    return rows


def _read_outcome(path: Path) -> dict | None:
    try:
        outcome = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return outcome if isinstance(outcome, dict) and {"key", "error", "result", "seconds"} <= outcome.keys() else None


def machine() -> dict:
    """Cores, CPU model and load average of this machine."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores": os.cpu_count(), "usable_cores": usable, "cpu": model, "load_average": _load_average()}


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _uncommitted() -> bool:
    """Whether the checkout differs from its commit (the figures then belong to no commit exactly)."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(status.stdout.strip())


def _figure(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def results_table(rows: Sequence[dict]) -> str:
    """The Markdown table: benchmark, command, key figures, ratio, status."""
    lines = ["| benchmark | command | key figures | ratio against the reference | status |",
             "|---|---|---|---|---|"]
    for row in rows:
        benchmark, result = row["benchmark"], row["result"] or {}
        figures = ", ".join(f"{key} {_figure(result[key])}" for key in benchmark.figures if key in result)
        ratio = (f"**{_figure(result[benchmark.ratio_key])}** ({benchmark.ratio_means})"
                 if benchmark.ratio_key in result else "n/a")
        status = f"FAILED: {row['error']}" if row["error"] else "ok"
        status += f", {row['seconds']} s" + (" (reused)" if row.get("reused") else "")
        cells = [f"{benchmark.name}: {benchmark.what}", f"`{row['command']}`", figures or "-", ratio, status]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(lines)


def results_markdown(rows: Sequence[dict], facts: dict) -> str:
    failed = [row["benchmark"].name for row in rows if row["error"]]
    header = [
        "# Benchmark results",
        "",
        f"Written by `bash bench/run_all.sh{' --quick' if facts['quick'] else ''}`, started {facts['date']}, "
        f"finished {facts['finished']}, git commit `{facts['commit']}`"
        + (" plus uncommitted changes." if facts["uncommitted"] else "."),
        "",
        f"Machine: {facts['cores']} cores ({facts['usable_cores']} usable), {facts['cpu']}; "
        f"OMP_NUM_THREADS={facts['omp_threads']}. Load average (1, 5, 15 min) {facts['load_before']} before and "
        f"{facts['load_after']} after: the machine may be shared, so times vary between runs.",
        "",
        f"{len(rows) - len(failed)} of {len(rows)} benchmarks finished"
        + (f"; failed: {', '.join(failed)}." if failed else "."),
        "",
        results_table(rows),
        "",
        "## Last lines (JSON), verbatim",
        "",
    ]
    for row in rows:
        header.append(f"- `{row['benchmark'].name}`: "
                      + (f"`{json.dumps(row['result'])}`" if row["result"] is not None else f"none ({row['error']})"))
    return "\n".join(header) + "\n"


def main(argv: Sequence[str] | None = None, benchmarks: Sequence[Benchmark] = BENCHMARKS) -> int:
    args = parse_args(make_parser(), argv)
    if args.timeout <= 0:
        from data.errors import InputError

        raise InputError(f"--timeout must be positive, got {args.timeout}")
    chosen = [b for b in benchmarks if not args.only or b.name in args.only]
    facts = {"quick": args.quick, "date": _now(), "commit": git_commit() or "unknown",
             "uncommitted": _uncommitted(), "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"), **machine()}
    facts["load_before"] = facts.pop("load_average")
    rows = run_all(chosen, args.quick, args.log_dir, args.timeout, args.rerun)
    facts["load_after"], facts["finished"] = _load_average(), _now()
    atomic_write_text(args.output, results_markdown(rows, facts))
    config = config_path(args.output)
    write_config(config.parent, args, filename=config.name, output=str(args.output))
    failed = sum(bool(row["error"]) for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} benchmarks finished: {args.output} (logs: {args.log_dir})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run(main))
