"""Scoring prediction files against gold files, matched by id: the code path behind every reported number.

    from eval.scoring import metric_values, score_files
    report = score_files("dev_outputs.json", "run/predictions.json")      # task from the files
    metric_values(report)                                                 # {"rouge-1": ..., "rouge-L": ...}

Both files use the official LaMP format ``{"task": "LaMP_4", "golds": [{"id": ..., "output": ...}, ...]}``
(predictions too keep the key "golds"). A report has the official scorer's shape, the metrics at the top
level, with lampkit's counts beside them (never a metric name)::

    {"rouge-1": 0.41, "rouge-L": 0.37, "task": "LaMP_4", "num_examples": 1925,
     "missing_predictions": 0, "empty_predictions": 3[, "golds_file": ..., "predictions_file": ...]}

An empty (or blank) prediction is a model output like any other, scored as the official scorers score it
(ROUGE 0, a wrong label, the rating farthest from the gold) and counted in ``empty_predictions``. Bad input
raises a one-line ``InputError`` naming the file, the record and the field: malformed/missing files,
duplicate ids, prediction ids without a gold, golds without a prediction (unless ``allow_missing``), tasks
that disagree (compared canonically, LaMP-4 == LaMP_4), non-string outputs and empty gold outputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from data.errors import InputError, input_error
from data.io import read_json
from data.tasks import get_task, may_mean, task_of_file
from eval.metrics import METRICS, aggregate, example_stats, reference_problem

# What a report holds beside the metric values (a metric name is never one of these).
REPORT_FIELDS = ("task", "num_examples", "missing_predictions", "empty_predictions", "golds_file",
                 "predictions_file")
FORMAT_HINT = 'expected {"task": "<task name>", "golds": [{"id": "<id>", "output": "<text>"}, ...]}'


@dataclass(frozen=True)
class OutputsFile:
    """One {"task", "golds"} file: canonical task name and outputs by id (in file order)."""
    source: str                  # the path, or how to find the file (e.g. "preds.zip:LaMP_4/out.json")
    task: str
    outputs: dict[str, object]


@dataclass(frozen=True)
class MatchedOutputs:
    """Predictions aligned with golds, in gold order."""
    task: str
    ids: list[str]
    predictions: list[str]
    references: list[str]
    missing: list[str]           # gold ids without a prediction, scored as ""
    empty: list[str]             # gold ids whose prediction is empty or blank (a valid, scored output)


def read_outputs(path: str | os.PathLike, source: str | None = None) -> OutputsFile:
    """Read and check a {"task", "golds"} file; ``source`` names it in messages (default: the path)."""
    source = source or str(path)
    try:
        data = read_json(path)
    except InputError as err:
        raise InputError(str(err).replace(str(Path(path)), source, 1)) from None
    return outputs_from_json(data, source)


def outputs_from_json(data: object, source: str) -> OutputsFile:
    """Check the structure of a loaded {"task", "golds"} object; ``source`` names it in messages."""
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list) or "task" not in data:
        raise input_error(source, FORMAT_HINT)
    if not isinstance(data["task"], str):
        raise input_error(source, "must be a task name", field="task")
    try:
        task = get_task(data["task"]).name
    except InputError as err:
        raise input_error(source, str(err), field="task") from None
    outputs: dict[str, object] = {}
    for position, entry in enumerate(data["golds"]):
        if not isinstance(entry, dict) or "id" not in entry or "output" not in entry:
            raise input_error(source, f'entry #{position} must be an object with "id" and "output"')
        record_id = entry["id"]
        if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
            raise input_error(source, f"entry #{position}: the id must be a string", field="id")
        record_id = str(record_id)  # numeric ids written by other tools still match the string ids
        if record_id in outputs:
            raise input_error(source, "duplicate id", record=record_id)
        outputs[record_id] = entry["output"]
    if not outputs:
        raise input_error(source, "no records", field="golds")
    task = task_of_file(data["task"], outputs.values()).name      # an old news "LaMP_2" is LaMP_2N
    return OutputsFile(source=source, task=task, outputs=outputs)


def _examples(ids: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


def match_outputs(task: str, golds: Mapping[str, object], predictions: Mapping[str, object],
                  allow_missing: bool = False, golds_source: str = "golds",
                  predictions_source: str = "predictions") -> MatchedOutputs:
    """Align predictions with golds by id, checking ids and output values."""
    spec = get_task(task)
    extra = [record_id for record_id in predictions if record_id not in golds]
    if extra:
        raise input_error(predictions_source, f"{len(extra)} id(s) not in the golds ({golds_source}): "
                                              f"{_examples(extra)}")
    missing = [record_id for record_id in golds if record_id not in predictions]
    if missing and not allow_missing:
        raise input_error(predictions_source, f"no prediction for {len(missing)} of {len(golds)} gold id(s): "
                                              f"{_examples(missing)} (--allow_missing scores them as empty)")
    references, outputs, empty = [], [], []
    for record_id, gold in golds.items():
        if not isinstance(gold, str):
            raise input_error(golds_source, f"must be a string, got {type(gold).__name__}",
                              record=record_id, field="output")
        problem = reference_problem(spec, gold)
        if problem:
            raise input_error(golds_source, problem, record=record_id, field="output")
        prediction = predictions.get(record_id, "")
        if not isinstance(prediction, str):
            raise input_error(predictions_source, f"must be a string, got {type(prediction).__name__}",
                              record=record_id, field="output")
        if record_id in predictions and not prediction.strip():
            empty.append(record_id)
        references.append(gold)
        outputs.append(prediction)
    return MatchedOutputs(task=spec.name, ids=list(golds), predictions=outputs, references=references,
                          missing=missing, empty=empty)


def match_files(golds: OutputsFile, predictions: OutputsFile, task: str | None = None,
                allow_missing: bool = False) -> MatchedOutputs:
    """Match two read files, checking that their tasks (and ``task``, when given) agree."""
    if not may_mean(predictions.task, golds.task):
        raise input_error(predictions.source, f"task {predictions.task} does not match {golds.task} "
                                              f"of the golds ({golds.source})", field="task")
    if task is not None and not may_mean(task, golds.task):
        raise input_error(golds.source, f"task {golds.task} does not match the requested task "
                                        f"{get_task(task).name}", field="task")
    return match_outputs(golds.task, golds.outputs, predictions.outputs, allow_missing,
                         golds.source, predictions.source)


def metric_values(report: Mapping[str, object]) -> dict[str, float]:
    """The metrics of a report (any dict with metric names at the top level), in the report's order."""
    return {name: value for name, value in report.items() if name in METRICS}


def score_matched(matched: MatchedOutputs, metrics: Sequence[str] | str | None = None,
                  workers: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The report (metric values at the top level, then the counts) and the per-example statistics."""
    stats = example_stats(matched.task, matched.predictions, matched.references, metrics, workers)
    report = {
        **aggregate(matched.task, stats),
        "task": matched.task,
        "num_examples": len(matched.ids),
        "missing_predictions": len(matched.missing),
        "empty_predictions": len(matched.empty),
    }
    return report, stats


def score_predictions(task: str, golds: Mapping[str, object], predictions: Mapping[str, object],
                      metrics: Sequence[str] | str | None = None, allow_missing: bool = False,
                      workers: int | None = None) -> dict:
    """Score in-memory {id: output} dicts; same checks and report as :func:`score_files`."""
    matched = match_outputs(task, golds, predictions, allow_missing)
    return score_matched(matched, metrics, workers)[0]


def score_files(golds_path: str | os.PathLike, preds_path: str | os.PathLike, task: str | None = None,
                metrics: Sequence[str] | str | None = None, allow_missing: bool = False,
                workers: int | None = None) -> dict:
    """Score a prediction file against a gold file.

    Returns {<metric>: value, ..., "task", "num_examples", "missing_predictions", "empty_predictions",
    "golds_file", "predictions_file"}. task=None takes the files' task; metrics=None the task's defaults.
    """
    golds = read_outputs(golds_path)
    predictions = read_outputs(preds_path)
    matched = match_files(golds, predictions, task, allow_missing)
    report, _ = score_matched(matched, metrics, workers)
    return {**report, "golds_file": str(Path(golds_path)), "predictions_file": str(Path(preds_path))}
