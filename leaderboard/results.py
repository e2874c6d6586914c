"""Read what the cells made: score each cell's predictions with eval/, compare it with the no-profile cell
on the same examples (paired bootstrap), and add its cost (wall time, peak memory, trainable parameters).

Nothing is re-implemented: the per-example statistics come from ``eval.scoring.score_matched`` and the
interval from ``eval.bootstrap.paired_bootstrap``; trainable parameters are the sum of ``trainable_parameters``
over every ``training.json`` (``runtime.run_folder.TRAINING_FILE``) under the cell's run folders.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from data.errors import InputError, input_error
from data.io import read_json
from data.tasks import get_task
from eval.bootstrap import PairedBootstrap, paired_bootstrap
from eval.scoring import match_outputs, metric_values, read_outputs, score_matched
from leaderboard.runner import DONE, FAILED, CellRun
from runtime.run_folder import TRAINING_FILE

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95


@dataclass
class Scored:
    """A cell's predictions scored against the golds: the metric values and the per-example statistics."""
    source: str
    ids: list[str]
    metrics: dict[str, float]
    stats: dict[str, np.ndarray]


@dataclass
class Row:
    """One method on one task as the tables show it."""
    task: str
    method: str
    baseline: bool
    status: str                                  # "done" or "failed"
    reason: str = ""
    num_examples: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    comparisons: dict[str, PairedBootstrap] = field(default_factory=dict)   # against the baseline, by metric
    wall_seconds: float = 0.0
    peak_mb: float | None = None
    trainable_parameters: int | None = None


def score_cell(task: str, predictions: Path, golds: Mapping[str, str], golds_source: str) -> Scored:
    """Score a predictions file against every gold (a missing or extra id is an error) with the task's metrics."""
    spec = get_task(task)
    read = read_outputs(predictions)
    if read.task != spec.name:
        raise input_error(predictions, f"holds {read.task} predictions, not {spec.name}", field="task")
    matched = match_outputs(spec.name, golds, read.outputs, golds_source=golds_source,
                            predictions_source=str(predictions))
    report, stats = score_matched(matched, spec.metrics)
    return Scored(str(predictions), matched.ids, metric_values(report), stats)


def compare(task: str, baseline: Scored, candidate: Scored, samples: int = BOOTSTRAP_SAMPLES,
            seed: int = 0) -> dict[str, PairedBootstrap]:
    """The paired-bootstrap interval of candidate - baseline for each metric, on the very same example ids."""
    if candidate.ids != baseline.ids:
        only_candidate = [i for i in candidate.ids if i not in set(baseline.ids)]
        only_baseline = [i for i in baseline.ids if i not in set(candidate.ids)]
        detail = (f"{len(only_candidate)} id(s) only here {only_candidate[:3]}, {len(only_baseline)} only in the "
                  f"baseline {only_baseline[:3]}" if only_candidate or only_baseline else "same ids in another order")
        raise input_error(candidate.source, f"its example ids differ from the baseline's ({baseline.source}): {detail}")
    return {metric: paired_bootstrap(task, metric, baseline.stats[metric], candidate.stats[metric],
                                     samples=samples, confidence=CONFIDENCE, seed=seed)
            for metric in candidate.metrics}


def trainable_parameters(run_dirs: Sequence[Path]) -> int:
    """The sum of "trainable_parameters" over every training.json under ``run_dirs`` (0: nothing trained)."""
    files = sorted({path.resolve() for folder in run_dirs if Path(folder).is_dir()
                    for path in Path(folder).rglob(TRAINING_FILE)})
    total = 0
    for path in files:
        info = read_json(path)
        value = info.get("trainable_parameters") if isinstance(info, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise input_error(path, "must be a count of parameters", field="trainable_parameters")
        total += value
    return total


def task_rows(task: str, golds: Mapping[str, str], golds_source: str, runs: Sequence[CellRun],
              samples: int = BOOTSTRAP_SAMPLES) -> list[Row]:
    """The rows of one task's cells (in their order); a cell whose outputs cannot be read is a failed row."""
    rows, scored = [], {}
    for run in runs:
        cell = run.cell
        row = Row(task=task, method=cell.method, baseline=cell.baseline, status=run.status, reason=run.reason,
                  wall_seconds=run.wall_seconds, peak_mb=run.peak_mb)
        if run.status == DONE:
            try:
                scored[cell.method] = score_cell(task, cell.predictions, golds, golds_source)
                row.trainable_parameters = trainable_parameters(cell.run_dirs)
            except InputError as error:
                row.status, row.reason = FAILED, str(error)
        if row.status == DONE:
            row.metrics, row.num_examples = scored[cell.method].metrics, len(scored[cell.method].ids)
        rows.append(row)
    baselines = [row for row in rows if row.baseline]
    if len(baselines) != 1:
        raise InputError(f"{task}: {len(baselines)} baseline cells; the cell list must have exactly one")
    baseline = baselines[0]
    if baseline.status != DONE:
        return rows
    for row in rows:
        if row.status == DONE:
            try:
                row.comparisons = compare(task, scored[baseline.method], scored[row.method], samples)
            except InputError as error:
                row.status, row.reason, row.metrics = FAILED, str(error), {}
    return rows
