"""LLM feedback on single profile items (spec lamp.md 8.1): which of a question's top-N items, alone in the
prompt, makes the LLM answer best.

    pairs = candidate_pairs(spec, examples, profile_size=8, ranker="bm25")       # (question, item, rank)
    keys = [pair_key(p.example.id, p.item["id"]) for p in pairs]                   # "{question_id}-{item_id}"
    feedback = score_pairs(spec, pairs, outputs)                                   # {key: {metric..., output, rank}}

The scores file is ``{"{question_id}-{item_id}": {<metric>: value, ..., "output": text, "rank": r}}``: the
reference's keys and per-example metrics (``eval.metrics.per_example_scores``, official names), plus the
LLM's output and the item's position ``rank`` among the question's N candidates, so training takes the same
candidates in the same order without ranking again (a reference file without ``rank`` falls back to the
profile order of the training file, which is what the reference assumes).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from data.errors import input_error
from data.io import atomic_write_json, read_json
from data.records import Example
from data.tasks import TaskSpec
from lamp_rag.retrieval import DEFAULT_DENSE_INDEX, rank_indices

SHARD_FILE = re.compile(r"scores_(\d+)_(-?\d+)\.json")


@dataclass(frozen=True)
class Pair:
    example: Example
    item: Mapping
    rank: int           # position of the item among the question's top-N candidates (0 = best)

    @property
    def key(self) -> str:
        return pair_key(self.example.id, self.item["id"])


def pair_key(question_id, item_id) -> str:
    return f"{question_id}-{item_id}"


def candidate_orders(spec: TaskSpec, examples: Sequence[Example], profile_size: int, ranker: str,
                     is_ranked: bool = False, use_date: bool = False, encoder=None,
                     dense_index: str = DEFAULT_DENSE_INDEX) -> list[list[int]]:
    """Per question, the profile indices of its top-``profile_size`` items, best first (``is_ranked``: the
    file's own profile order, as the reference reads a merge_with_rank file)."""
    if is_ranked:
        return [list(range(min(profile_size, len(example.profile)))) for example in examples]
    orders = rank_indices(spec, examples, ranker, use_date=use_date, encoder=encoder, dense_index=dense_index)
    return [order[:profile_size] for order in orders]


def candidate_pairs(spec: TaskSpec, examples: Sequence[Example], profile_size: int, ranker: str = "bm25",
                    is_ranked: bool = False, use_date: bool = False, encoder=None,
                    dense_index: str = DEFAULT_DENSE_INDEX) -> list[Pair]:
    """The flattened (question, item) pairs the scorer generates for, questions in file order."""
    orders = candidate_orders(spec, examples, profile_size, ranker, is_ranked, use_date, encoder, dense_index)
    return [Pair(example, example.profile[index], rank)
            for example, order in zip(examples, orders) for rank, index in enumerate(order)]


def shard_range(total: int, start: int, end: int) -> range:
    """The reference's [start_index, end_index) over the flattened pairs; end -1 means the last pair."""
    stop = total if end == -1 else min(end, total)
    if start < 0 or start > stop:
        raise input_error(None, f"--start_index {start} / --end_index {end}: empty or invalid range "
                                f"for {total} (question, item) pairs")
    return range(start, stop)


def shard_path(output_dir: str | os.PathLike, start: int, end: int) -> Path:
    return Path(output_dir) / f"scores_{start}_{end}.json"


def score_pairs(spec: TaskSpec, pairs: Sequence[Pair], outputs: Sequence[str]) -> dict[str, dict]:
    """Per pair, its per-example metrics against the question's gold, the output and the candidate rank."""
    from eval.metrics import per_example_scores

    missing = [pair.example.id for pair in pairs if pair.example.target is None]
    if missing:
        raise input_error(None, "no gold output; feedback needs one (give the outputs file)",
                          record=missing[0], field="output")
    metrics = per_example_scores(spec.name, list(outputs), [pair.example.target for pair in pairs])
    return {pair.key: {**{name: values[i] for name, values in metrics.items()}, "output": outputs[i],
                       "rank": pair.rank}
            for i, pair in enumerate(pairs)}


def merge_score_files(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """One scores dict from shard files; a key scored differently in two shards is an error."""
    merged: dict[str, dict] = {}
    for path in paths:
        scores = read_json(path)
        if not isinstance(scores, dict):
            raise input_error(path, 'expected {"<question_id>-<item_id>": {<metric>: value, ...}}')
        for key, value in scores.items():
            if not isinstance(value, dict):
                raise input_error(path, "expected a dict of metric values", record=key)
            if key in merged and merged[key] != value:
                raise input_error(path, "scored differently in an earlier shard", record=key)
            merged[key] = value
    return merged


def shard_files(folder: str | os.PathLike) -> list[Path]:
    """The scorer's ``scores_<start>_<end>.json`` files in a folder, by start index."""
    found = [(int(match.group(1)), path) for path in Path(folder).iterdir()
             if (match := SHARD_FILE.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def write_merged(paths: Sequence[Path], output: Path) -> dict[str, dict]:
    merged = merge_score_files(paths)
    atomic_write_json(output, merged)
    return merged
