"""AlignX preference records as CURP reads them (spec profile_study_baseline_longlamp.md D, curp_cope_oppu 2.1).

A record: ``prompt``, ``chosen``, ``rejected``, ``"Preference Direction"`` (90 values in {0, 0.5, 1}),
``"Demographic Information"``, ``"User-Generated Content"`` (up to 4 ``{prompt, comment, "Preference
Direction"}``) and ``"Pair-wise Comparative Feedback"`` (up to 4 ``{prompt, chosen, rejected,
"Preference Direction"}``). The four persona fields may be absent or null in some files (test files carry
one signal each) and then read as empty; other fields (e.g. the test files' ``profile``, CURP's ``ugc_id``
inside items) are kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from data.errors import input_error
from data.loaders import iter_records

PREFERENCE = "Preference Direction"
DEMOGRAPHIC = "Demographic Information"
UGC = "User-Generated Content"
PAIRS = "Pair-wise Comparative Feedback"
UGC_FIELDS = ("prompt", "comment", PREFERENCE)
PAIR_FIELDS = ("prompt", "chosen", "rejected", PREFERENCE)


@dataclass
class AlignXRecord:
    prompt: str
    chosen: str
    rejected: str
    preference_direction: list[float] = field(default_factory=list)
    demographic_information: str = ""
    user_generated_content: list[dict] = field(default_factory=list)
    pairwise_feedback: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The record with AlignX's own key names."""
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected,
                PREFERENCE: self.preference_direction, DEMOGRAPHIC: self.demographic_information,
                UGC: self.user_generated_content, PAIRS: self.pairwise_feedback, **self.extra}


def _preference(path: Path | None, value: Any, record: int, name: str) -> list:
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise input_error(path, "must be a list of numbers", record=record, field=name)
    return value


def _items(path: Path | None, value: Any, record: int, name: str, required: tuple[str, ...]) -> list[dict]:
    if not isinstance(value, list):
        raise input_error(path, f"must be a list, got {type(value).__name__}", record=record, field=name)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise input_error(path, "must be an object", record=record, field=f"{name}[{i}]")
        for key in required:
            where = f"{name}[{i}].{key}"
            if key not in item:
                raise input_error(path, "missing", record=record, field=where)
            if key == PREFERENCE:
                _preference(path, item[key], record, where)
            elif not isinstance(item[key], str):
                raise input_error(path, "must be a string", record=record, field=where)
    return value


def parse_alignx(record: Any, path: str | Path | None = None, index: int = 0) -> AlignXRecord:
    """Check one raw record; errors name the file, the record index and the field."""
    if not isinstance(record, dict):
        raise input_error(path, f"must be an object, got {type(record).__name__}", record=index)
    texts = {}
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(record.get(key), str):
            raise input_error(path, "missing" if key not in record else "must be a string",
                              record=index, field=key)
        texts[key] = record[key]
    demographic = record.get(DEMOGRAPHIC) or ""
    if not isinstance(demographic, str):
        raise input_error(path, "must be a string", record=index, field=DEMOGRAPHIC)
    known = {"prompt", "chosen", "rejected", PREFERENCE, DEMOGRAPHIC, UGC, PAIRS}
    return AlignXRecord(
        **texts, demographic_information=demographic,
        preference_direction=_preference(path, record.get(PREFERENCE) or [], index, PREFERENCE),
        user_generated_content=_items(path, record.get(UGC) or [], index, UGC, UGC_FIELDS),
        pairwise_feedback=_items(path, record.get(PAIRS) or [], index, PAIRS, PAIR_FIELDS),
        extra={k: v for k, v in record.items() if k not in known})


def iter_alignx(path: str | Path, limit: int | None = None) -> Iterator[AlignXRecord]:
    """Stream the records of an AlignX JSON array, JSON Lines or parquet file."""
    for index, record in enumerate(iter_records(path)):
        if index == limit:
            return
        yield parse_alignx(record, path, index)


def load_alignx(path: str | Path, limit: int | None = None) -> list[AlignXRecord]:
    return list(iter_alignx(path, limit))


def history_texts(record: AlignXRecord, limit: int | None = None) -> list[str]:
    """The user's history items in CURP's text form (encode.py), in record order, at most ``limit``."""
    items = record.user_generated_content[:limit]
    return [f"The user respond {item['comment']} for question {item['prompt']}" for item in items]
