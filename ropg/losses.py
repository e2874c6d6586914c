"""ROPG objectives (spec lamp.md 8.4, 8.5) on a batch of questions with up to C candidate items each.

Shapes: ``scores`` [B, C] retriever scores <q, d_j>; ``gold`` [B, C] the feedback value of each item
(:func:`feedback_values`, higher is better); ``mask`` [B, C] True for real items. Slot 0 is each
question's first candidate (the top-1 of the ranker that chose them), the RL baseline.

Where this differs from the reference, deliberately:
* KD is ``-sum_j q_j log p_j`` with p = softmax(s/T): the reference feeds the probabilities p into
  ``nn.CrossEntropyLoss``, which takes a log-softmax of them again (a double softmax that flattens the
  student's distribution and shrinks its gradient); we keep the plain cross-entropy to the teacher (KL up to
  a constant).
* Questions with fewer than C items are masked, not padded with empty documents: the reference scores the
  empty strings and gives them gold 0 (or, for LaMP-3, the top value w, above every real item), so padding
  took part in the softmax and, for LaMP-3, was the teacher's favourite.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from data.errors import input_error
from data.tasks import TaskSpec


def feedback_metric(spec: TaskSpec) -> str:
    """The metric ROPG learns from: the task's checkpoint metric (accuracy, MAE, rouge-1)."""
    return spec.best_metric


def worst_error(spec: TaskSpec, gold: str) -> float:
    """w = the largest error an answer can make on this gold: its distance to the farther end of the label
    range (LaMP-3: max(|y-1|, |y-5|)), which normalises a lower-is-better metric to [0, 1]."""
    ends = [float(label) for label in spec.labels]
    value = float(gold)
    return max(abs(value - min(ends)), abs(value - max(ends)))


def feedback_values(spec: TaskSpec, item_scores: Sequence[Mapping], gold: str, source=None,
                    record=None) -> list[float]:
    """Per item, its feedback value, higher is better: the metric itself, or (w - error) / w for a
    lower-is-better metric (the reference's LaMP-3 rule). Metric names match case-insensitively, so the
    reference's ``mae`` files read too."""
    metric = feedback_metric(spec)
    values = []
    for scores in item_scores:
        found = next((value for name, value in scores.items() if name.lower() == metric.lower()), None)
        if not isinstance(found, (int, float)):
            raise input_error(source, f"no numeric {metric!r} in the item's scores", record=record, field=metric)
        values.append(float(found))
    if spec.greater_is_better:
        return values
    worst = worst_error(spec, gold)
    return [(worst - value) / worst for value in values]


def kd_loss(scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ROPG-KD: cross-entropy from the teacher softmax(gold/T) to the student softmax(scores/T), batch mean."""
    hidden = torch.finfo(scores.dtype).min
    log_student = torch.log_softmax(scores.masked_fill(~mask, hidden) / temperature, dim=-1)
    teacher = torch.softmax(gold.masked_fill(~mask, hidden) / temperature, dim=-1)
    return -(teacher * log_student.masked_fill(~mask, 0.0)).sum(-1).mean()


def sample_items(scores: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One item index per question drawn from pi = softmax(scores) over its real items."""
    policy = torch.softmax(scores.detach().masked_fill(~mask, float("-inf")), dim=-1)
    return torch.multinomial(policy, 1, generator=generator).squeeze(1)


def reinforce_loss(scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor,
                   sampled: torch.Tensor) -> torch.Tensor:
    """ROPG-RL: -mean_b log pi(j_b) * (gold[j_b] - gold[0]), the first candidate's value as the baseline."""
    log_policy = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    chosen = sampled.unsqueeze(1)
    reward = (gold.gather(1, chosen) - gold[:, :1]).squeeze(1)
    return -(log_policy.gather(1, chosen).squeeze(1) * reward).mean()


def rl_loss(scores: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor,
            generator: torch.Generator | None = None) -> torch.Tensor:
    return reinforce_loss(scores, gold, mask, sample_items(scores, mask, generator))
