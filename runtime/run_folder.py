"""The run folder: one layout for every method's result, which ``python -m eval.report`` reads.

    <run folder>/
        config.json        the arguments, git commit, versions and "method" (data.cli.write_config)
        run.log            the log (data.cli.setup_logging)
        prompts.jsonl      {"id", "text", "num_tokens"} per example: the prompt exactly as fed to the model
        generations.jsonl  {"id", "key", "output"}: raw outputs of finished batches, the resume log
        predictions.json   LaMP gold format {"task", "golds": [{"id", "output"}]}
        scores.json        the eval report {<metric>: value, ..., "task", "num_examples", ...}
        training.json      {"trainable_parameters": N, ...} of a run that trained weights (write_training_info)

A folder with a ``scores.json`` is one row of ``eval.report``; nothing else in it is method-specific.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from data.io import atomic_write_json

log = logging.getLogger("lampkit.runtime")

CONFIG_FILE = "config.json"
LOG_FILE = "run.log"
PROMPTS_FILE = "prompts.jsonl"
GENERATIONS_FILE = "generations.jsonl"
PREDICTIONS_FILE = "predictions.json"
SCORES_FILE = "scores.json"
TRAINING_FILE = "training.json"


def write_run_config(output_dir: str | os.PathLike, args, method: str, **extra) -> Path:
    """config.json of a run: ``data.cli.write_config`` plus the method that made it (the contract's "method")."""
    from data.cli import write_config

    return write_config(output_dir, args, method=method, **extra)


def write_scores(output_dir: str | os.PathLike, task: str, golds: Mapping[str, str],
                 predictions: Mapping[str, str], extra_metrics: Mapping[str, float] | None = None) -> dict[str, float]:
    """Score ``predictions`` against ``golds`` with ``eval`` and write scores.json; returns the metrics.

    An empty prediction is a (bad) answer, scored as the official scorers do and counted in the report;
    a gold without a prediction is an error. ``extra_metrics``: a method's own measures, written beside
    the registry's (eval.report shows them as columns).
    """
    from eval.scoring import score_predictions

    return write_scores_report(output_dir, score_predictions(task, golds, predictions), extra_metrics)


def write_scores_report(output_dir: str | os.PathLike, report: Mapping[str, Any],
                 extra_metrics: Mapping[str, float] | None = None) -> dict[str, float]:
    """Write an eval report already computed (eval.scoring's shape) as scores.json, with ``extra_metrics``
    beside it; returns the metrics. For methods that also need the per-example statistics of the scoring."""
    from eval.scoring import metric_values

    report = {**report, **(extra_metrics or {})}
    path = atomic_write_json(Path(output_dir) / SCORES_FILE, report)
    print(f"scores: {path}")
    return metric_values(report)


def trainable_parameters(model) -> int:
    """Number of parameters a training run updates (``requires_grad``): the LoRA weights of a PEFT model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def write_training_info(output_dir: str | os.PathLike, trainable: int, **extra) -> Path:
    """training.json of a run that trained weights: what the leaderboard reports as its trainable parameters."""
    return atomic_write_json(Path(output_dir) / TRAINING_FILE, {"trainable_parameters": int(trainable), **extra})
