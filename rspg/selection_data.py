"""The selector's training data: per question, every retriever's prompt, LLM output and metric (spec 9.2).

One record per question, in questions-file order (the reference's fields, the profile left out)::

    {"id", "input", "gold", "labels": [metric per retriever], "outputs": [...], "inputs": [...],
     "retrievers": [names], "metric": "rouge-1"}

Where this differs from the reference, on purpose:
* any number of retrievers, not the hard-coded six; their names and the metric travel with the data, so
  the selector and its table need no other bookkeeping;
* the inputs come from the feedback files themselves (the scorer stores each prompt), so the ``data.json``
  that nothing produces (LaMP issue #9) is not needed;
* ``--metric`` is matched case-insensitively to the metric registry, so the README's ``rouge-l`` and
  ``mae`` work (the reference raises KeyError on ``rouge-l``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from data.errors import InputError, input_error
from data.io import read_json
from data.records import Example

RECORD_FIELDS = ("id", "input", "gold", "labels", "outputs", "inputs", "retrievers", "metric")


def resolve_metric(name: str, available: Sequence[str]) -> str:
    """The metric registry's spelling of ``name`` among the feedback's metrics (``rouge-l`` -> ``rouge-L``)."""
    matches = [key for key in available if key.lower() == name.lower()]
    if not matches:
        raise InputError(f"--metric {name!r}: the feedback files have {', '.join(available) or 'no metrics'}")
    return matches[0]


def retriever_names(locations: Sequence[str | os.PathLike]) -> list[str]:
    """A name per feedback location: its folder's name (a file's parent folder), the path when those clash."""
    names = [(Path(location).parent if Path(location).is_file() else Path(location)).name
             for location in locations]
    if len(set(names)) < len(names):
        names = [str(location) for location in locations]
    if len(set(names)) < len(names):
        raise InputError(f"the same retriever folder is given twice: {', '.join(map(str, locations))}")
    return names


def build_records(examples: Sequence[Example], feedbacks: Sequence[tuple[Path, Mapping[str, Mapping]]],
                  names: Sequence[str], metric: str) -> list[dict]:
    """One selection record per question (see the module doc); a question missing from a feedback file,
    or without the metric there, is an InputError naming that file."""
    records = []
    for example in examples:
        if example.target is None:
            raise InputError(f"question {example.id!r} has no gold output")
        rows = []
        for path, feedback in feedbacks:
            if example.id not in feedback:
                raise input_error(path, "question missing from this retriever's feedback", record=example.id)
            value = feedback[example.id]["metric"].get(metric)
            if not isinstance(value, (int, float)):
                raise input_error(path, f"no number for {metric!r}", record=example.id, field="metric")
            rows.append(feedback[example.id])
        records.append({"id": example.id, "input": example.input, "gold": example.target,
                        "labels": [float(row["metric"][metric]) for row in rows],
                        "outputs": [row["output"] for row in rows], "inputs": [row["input"] for row in rows],
                        "retrievers": list(names), "metric": metric})
    return records


def read_records(path: str | os.PathLike) -> list[dict]:
    """A create_data output, every record checked: the same retrievers everywhere, one value of each per list."""
    records = read_json(path)
    if not isinstance(records, list) or not records:
        raise input_error(path, "expected a non-empty JSON list of selection records (rspg.create_data output)")
    first = records[0]
    for record in records:
        record_id = record.get("id") if isinstance(record, dict) else None
        if not isinstance(record, dict):
            raise input_error(path, "not an object", record=record_id)
        for field in RECORD_FIELDS:
            if field not in record:
                raise input_error(path, "missing", record=record_id, field=field)
        if record["retrievers"] != first["retrievers"] or record["metric"] != first["metric"]:
            raise input_error(path, "retrievers or metric differ from the first record's", record=record_id,
                              field="retrievers")
        for field in ("labels", "outputs", "inputs"):
            if not isinstance(record[field], list) or len(record[field]) != len(first["retrievers"]):
                raise input_error(path, f"needs one entry per retriever ({len(first['retrievers'])})",
                                  record=record_id, field=field)
    return records
