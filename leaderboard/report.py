"""The leaderboard's outputs: leaderboard.md (one table per task), leaderboard.csv (one row per task x method x
metric) and one PNG chart per task (each method's difference from the baseline with its interval)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Sequence

from data.io import atomic_write_bytes, atomic_write_text
from data.tasks import get_task
from leaderboard.results import CONFIDENCE, Row
from leaderboard.runner import DONE

MISSING = "-"
CSV_COLUMNS = ("task", "method", "metric", "value", "delta", "low", "high", "p_not_better", "num_examples",
               "wall_seconds", "peak_mb", "trainable_parameters", "status", "reason")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{seconds:.1f} s" if seconds < 60 else f"{minutes} min {rest:02d} s"


def _interval(row: Row, metric: str) -> str:
    if row.baseline:
        return "baseline"
    comparison = row.comparisons.get(metric)
    if comparison is None:
        return MISSING
    mark = " *" if comparison.excludes_zero else ""
    return f"{comparison.difference:+.4f} [{comparison.low:+.4f}, {comparison.high:+.4f}]{mark}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows_by_task: Mapping[str, Sequence[Row]], header: Mapping[str, str], baseline_name: str) -> str:
    """The whole leaderboard.md: the run's facts, then one table per task."""
    lines = ["# Leaderboard", ""]
    lines += [f"- {name}: {value}" for name, value in header.items()]
    lines += ["", f"Δ: the method's metric minus {baseline_name}'s on the same examples, with its "
                  f"{CONFIDENCE:.0%} paired-bootstrap interval; * when the interval excludes 0. Wall time and peak "
                  "memory are those of the method's commands (a command shared by several methods counts for each)."]
    for task, rows in rows_by_task.items():
        metrics = list(get_task(task).metrics)
        columns = ["method", "n"]
        for metric in metrics:
            columns += [metric, f"Δ {metric} [{CONFIDENCE:.0%}]"]
        columns += ["wall time", "peak MB", "trainable params", "status"]
        lines += ["", f"## {task}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in rows:
            values = [row.method, MISSING if row.num_examples is None else str(row.num_examples)]
            for metric in metrics:
                value = row.metrics.get(metric)
                values += [MISSING if value is None else f"{value:.4f}", _interval(row, metric)]
            values += [_duration(row.wall_seconds), MISSING if row.peak_mb is None else f"{row.peak_mb:.0f}",
                       MISSING if row.trainable_parameters is None else f"{row.trainable_parameters:,}",
                       "ok" if row.status == DONE else f"failed: {row.reason}"]
            lines.append("| " + " | ".join(_cell(value) for value in values) + " |")
        if not any(row.baseline and row.status == DONE for row in rows):
            lines += ["", f"No intervals for {task}: its baseline ({baseline_name}) failed."]
    return "\n".join(lines) + "\n"


def csv_text(rows_by_task: Mapping[str, Sequence[Row]]) -> str:
    """One line per task x method x metric (a failed method keeps its lines, with empty values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for task, rows in rows_by_task.items():
        for row in rows:
            for metric in get_task(task).metrics:
                comparison = row.comparisons.get(metric)
                compared = ([comparison.difference, comparison.low, comparison.high, comparison.p_not_better]
                            if comparison else ["", "", "", ""])
                writer.writerow([task, row.method, metric, row.metrics.get(metric, ""), *compared,
                                 "" if row.num_examples is None else row.num_examples, row.wall_seconds,
                                 "" if row.peak_mb is None else row.peak_mb,
                                 "" if row.trainable_parameters is None else row.trainable_parameters,
                                 row.status, row.reason])
    return buffer.getvalue()


def chart(task: str, rows: Sequence[Row], baseline_name: str) -> bytes:
    """A PNG: per metric, each method's difference from the baseline as a point with its interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(get_task(task).metrics)
    labels = [row.method if row.status == DONE else f"{row.method} (failed)" for row in rows]
    positions = list(range(len(rows)))[::-1]              # the first row on top
    figure, axes = plt.subplots(1, len(metrics), sharey=True, squeeze=False,
                                figsize=(4.5 * len(metrics) + 2, 0.45 * len(rows) + 1.6))
    for axis, metric in zip(axes[0], metrics):
        for position, row in zip(positions, rows):
            comparison = row.comparisons.get(metric)
            if comparison is None:
                continue
            axis.errorbar([comparison.difference], [position], fmt="o", capsize=3,
                          color="tab:gray" if row.baseline else "tab:blue",
                          xerr=[[comparison.difference - comparison.low], [comparison.high - comparison.difference]])
            axis.annotate(f"{comparison.candidate:.3f}", (comparison.difference, position), fontsize=7,
                          xytext=(0, 5), textcoords="offset points", ha="center")
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_xlabel(f"Δ {metric} vs {baseline_name}")
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(positions, labels)
    axes[0][0].set_ylim(-0.7, len(rows) - 0.3)
    figure.suptitle(f"{task}: difference from {baseline_name}, {CONFIDENCE:.0%} paired-bootstrap intervals "
                    "(numbers: the method's value)", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def write_outputs(out_dir: Path, rows_by_task: Mapping[str, Sequence[Row]], header: Mapping[str, str],
                  baseline_name: str) -> list[Path]:
    """Write leaderboard.md, leaderboard.csv and <task>.png atomically; the paths written."""
    written = [atomic_write_text(out_dir / "leaderboard.md", markdown(rows_by_task, header, baseline_name)),
               atomic_write_text(out_dir / "leaderboard.csv", csv_text(rows_by_task))]
    for task, rows in rows_by_task.items():
        written.append(atomic_write_bytes(out_dir / f"{task}.png", chart(task, rows, baseline_name)))
    return written
