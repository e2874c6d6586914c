"""Paired bootstrap comparison of two systems scored on the same examples (Koehn 2004, Efron & Tibshirani).

Both systems are resampled with the same example indices, so the interval reflects how much the
difference depends on which examples happened to be in the test set. Corpus-level metrics (f1, RMSE,
bleu) are recomputed on every resample from their per-example statistics.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from data.errors import InputError
from data.tasks import get_task
from eval.metrics import METRICS


@dataclass(frozen=True)
class PairedBootstrap:
    metric: str
    baseline: float          # metric value of system A on all examples
    candidate: float         # metric value of system B
    difference: float        # candidate - baseline
    low: float               # confidence interval of the difference
    high: float
    confidence: float
    samples: int
    p_not_better: float      # share of resamples where the candidate is not better than the baseline

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def paired_bootstrap(task: str, metric: str, baseline_stats: np.ndarray, candidate_stats: np.ndarray,
                     samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> PairedBootstrap:
    """Bootstrap interval of metric(candidate) - metric(baseline) from their per-example statistics
    (``eval.metrics.example_stats``); the same seed gives the same resamples for every metric."""
    if len(baseline_stats) != len(candidate_stats):
        raise InputError(f"paired bootstrap needs the same examples: {len(baseline_stats)} vs "
                         f"{len(candidate_stats)}")
    if samples < 1:
        raise InputError(f"bootstrap samples must be at least 1, got {samples}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, got {confidence}")
    spec, definition = get_task(task), METRICS[metric]
    baseline = definition.aggregate(baseline_stats, spec)
    candidate = definition.aggregate(candidate_stats, spec)
    rng = np.random.default_rng(seed)
    n = len(baseline_stats)
    differences = np.empty(samples)
    for sample in range(samples):
        rows = rng.integers(0, n, size=n)
        differences[sample] = (definition.aggregate(candidate_stats[rows], spec)
                               - definition.aggregate(baseline_stats[rows], spec))
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    not_better = differences <= 0 if definition.higher_is_better else differences >= 0
    return PairedBootstrap(metric=metric, baseline=baseline, candidate=candidate,
                           difference=candidate - baseline, low=float(low), high=float(high),
                           confidence=confidence, samples=samples, p_not_better=float(not_better.mean()))
