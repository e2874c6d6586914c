"""Validation of a selection: final_preds.json in the LaMP gold format and the table that puts the selected
outputs next to every single retriever and the oracle, all scored by eval against the same golds."""
from __future__ import annotations

from typing import Mapping, Sequence

from eval.report import Row

BEST_PICK = "best_pick"     # share of questions whose chosen retriever has the best label (ties count)


def final_predictions(task: str, records: Sequence[dict], chosen: Sequence[int]) -> dict:
    """{"task", "golds": [{"id", "output", "index"}]}: the chosen retriever's output and its index."""
    return {"task": task, "golds": [{"id": record["id"], "output": record["outputs"][index], "index": index}
                                    for record, index in zip(records, chosen)]}


def best_pick_rate(records: Sequence[dict], chosen: Sequence[int]) -> float:
    from eval.metrics import METRICS

    best = max if METRICS[records[0]["metric"]].higher_is_better else min
    return sum(record["labels"][index] == best(record["labels"])
               for record, index in zip(records, chosen)) / len(records)


def selection_rows(task: str, golds: Mapping[str, str], records: Sequence[dict],
                   selections: Mapping[str, Sequence[int]]) -> tuple[list[Row], dict[str, dict]]:
    """One row per named selection (the selector's, the oracle's) and per single retriever, scored by eval
    against ``golds``, with the best-pick rate beside the task's metrics; and each one's eval report by name."""
    from eval.scoring import metric_values, score_predictions

    retrievers = records[0]["retrievers"]
    every = dict(selections)
    every.update({name: [index] * len(records) for index, name in enumerate(retrievers)})
    rows, reports = [], {}
    for name, chosen in every.items():
        predictions = {record["id"]: record["outputs"][index] for record, index in zip(records, chosen)}
        reports[name] = score_predictions(task, golds, predictions, allow_missing=False)
        rows.append(Row(name, task, reports[name]["num_examples"],
                        {**metric_values(reports[name]), BEST_PICK: best_pick_rate(records, chosen)}))
    return rows, reports
