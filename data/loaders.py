"""Load every benchmark file layout into ``data.records.Example``, and write the official layouts back.

Layouts are told apart by content, not by file name (spec lamp.md 2 and 5.2, profile_study C,
curp_cope_oppu 4):

* LaMP questions: a JSON list of ``{"id", "input", "profile"}`` (plus ``"user_id"`` in time-based splits),
  with the golds in a separate outputs file ``{"task", "golds": [{"id", "output"}]}`` joined by id;
* merged / "sorted" files (merge_with_rank output): questions that also carry ``"output"``;
* LongLaMP rows ``{<user field>, "input", "output", "profile"}``, the user field from the registry
  (``name`` / ``reviewerId`` / ``author``), as a JSON array, JSON Lines or parquet;
* OPPU/CoPe per-user files: a list of ``{"user_id" | "user_name", "profile", "query": [{"id", "input",
  "gold"}]}``, one Example per query, every query sharing its user's profile;
* the Avocado script's test file, which wraps the questions as ``{"task", "golds": [<questions>]}``.

Profile items fit one of the task's item layouts (``spec.item_shapes``: the benchmark's, OPPU's) and have
unique ids; tasks released without item ids get ``<record id>-p<position>`` (see ``_profile``).
Fields a layout does not know go to ``Example.extra`` and are written back, so conversions lose nothing.
Every bad input raises ``InputError`` with one line naming the file, the record and the field.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from data.errors import InputError, input_error
from data.io import atomic_write_json, atomic_write_text, read_json, require_file
from data.records import Example
from data.tasks import TaskSpec, get_task, task_of_file

CHUNK_CHARS = 1 << 20          # characters read per refill of the streaming JSON reader
USER_FIELDS = "user_fields"    # Example.extra key holding an OPPU user's own unknown fields
_DECODER = json.JSONDecoder()
_NON_BLANK = re.compile(r"[^ \t\n\r]")
_MISSING = object()


# ----------------------------------------------------------------------------- streaming records

class _JsonStream:
    """Decode the JSON values of one text file one at a time, never holding more than one value.

    ``json.JSONDecoder.raw_decode`` runs over a buffer refilled in chunks; a value cut by the end of the
    buffer fails (or, for a number, may end early), so more text is read and the value decoded again.
    """

    def __init__(self, handle, path: Path):
        self.handle, self.path = handle, path
        self.buf, self.pos, self.eof = "", 0, False
        self.lines_dropped = 0          # newlines in text already dropped from the buffer (error lines)

    def _read(self, size: int) -> None:
        text = self.handle.read(size)
        self.lines_dropped += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos, self.eof = self.buf[self.pos:] + text, 0, not text

    def peek(self) -> str:
        """Move to the next non-blank character and return it ('' at the end of the file)."""
        while True:
            match = _NON_BLANK.search(self.buf, self.pos)
            if match:
                self.pos = match.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if self.eof:
                return ""
            self._read(CHUNK_CHARS)

    def value(self) -> Any:
        """Decode the value at the cursor, reading on until it is complete."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if self.eof or not _maybe_truncated(err, len(self.buf)):
                    raise self.error(err.msg, err.pos) from None
            else:
                if end < len(self.buf) or self.eof:     # a number ending at the buffer end may go on
                    self.pos = end
                    return value
            # Grow geometrically so one huge record is decoded O(1) times, not once per chunk.
            self._read(max(CHUNK_CHARS, len(self.buf) - self.pos))

    def array_items(self) -> Iterator[Any]:
        """The elements of the top-level array whose '[' is at the cursor."""
        self.pos += 1
        if self.peek() == "]":
            self.pos += 1
        else:
            while True:
                self.peek()
                yield self.value()
                separator = self.peek()
                self.pos += 1
                if separator == "]":
                    break
                if separator != ",":
                    raise self.error("expected ',' or ']' after an array element" if separator
                                     else "unexpected end of file inside the top-level array", self.pos - 1)
        if self.peek():
            raise self.error("unexpected data after the top-level array", self.pos)

    def error(self, message: str, pos: int) -> InputError:
        line = self.lines_dropped + self.buf.count("\n", 0, pos) + 1
        return input_error(self.path, f"malformed JSON at line {line}: {message}")


def _maybe_truncated(err: json.JSONDecodeError, length: int) -> bool:
    """Whether a decode error may only mean the buffer ends inside the value (so read more and retry).

    Such errors sit at the buffer's end (a cut literal, number or escape starts a few characters before
    it), except an unterminated string, reported where the string starts. Errors well before the end are
    real syntax errors: reporting them at once avoids reading the rest of a huge file first.
    """
    return err.msg.startswith("Unterminated string") or err.pos >= length - 64


def _iter_parquet(path: Path) -> Iterator[dict]:
    import pyarrow as pa              # heavy import, only for parquet files
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=256)
        for batch in batches:
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise input_error(path, f"unreadable parquet file: {err}") from None


def iter_records(path: str | Path) -> Iterator[Any]:
    """Stream the raw records of a data file, holding one record in memory at a time.

    The records are the elements of a top-level JSON array, the values of a JSON Lines file (whatever its
    extension: HF ``.json`` files are often JSON Lines), the rows of a ``.parquet`` file, or the one
    object of a single-object JSON file.
    """
    path = Path(path)
    require_file(path)
    if path.suffix == ".parquet":
        yield from _iter_parquet(path)
        return
    with open(path, encoding="utf-8-sig") as handle:
        stream = _JsonStream(handle, path)
        try:
            first = stream.peek()
            if not first:
                raise input_error(path, "empty file")
            if first == "[":
                yield from stream.array_items()
            else:
                while stream.peek():
                    yield stream.value()
        except UnicodeDecodeError as err:
            raise input_error(path, f"not UTF-8 text ({err.reason})") from None


# ----------------------------------------------------------------------------- validation helpers

def as_id(path: Path, value: Any, record: object, field: str) -> str:
    """Ids must be strings; integers (some tools write them) are converted, anything else is an error."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is _MISSING:
        raise input_error(path, "missing", record=record, field=field)
    raise input_error(path, f"must be a string id, got {type(value).__name__} {value!r}",
                      record=record, field=field)


def _as_text(path: Path, value: Any, record: object, field: str, optional: bool = False) -> str | None:
    if isinstance(value, str):
        return value
    if optional and (value is None or value is _MISSING):
        return None
    if value is _MISSING:
        raise input_error(path, "missing", record=record, field=field)
    raise input_error(path, f"must be a string, got {type(value).__name__}", record=record, field=field)


def _profile(path: Path, value: Any, record: str, spec: TaskSpec) -> list[dict]:
    """Check a profile: a non-empty list of items with unique ids and the fields of one of the task's item
    layouts (``spec.item_shapes``).

    Tasks released without item ids (``spec.items_have_ids`` False: HF LongLaMP review and topic rows) get
    ``<record>-p<position>`` for each item without one, where record is the question id (the user id in an
    OPPU file) and position counts from 0: the same ids on every load of the same file.
    """
    if value is _MISSING:
        raise input_error(path, "missing", record=record, field="profile")
    if not isinstance(value, list):
        raise input_error(path, f"must be a list, got {type(value).__name__}", record=record, field="profile")
    if not value:
        raise input_error(path, "empty profile", record=record, field="profile")
    items, positions = [], {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise input_error(path, "must be an object", record=record, field=f"profile[{i}]")
        if "id" not in item and not spec.items_have_ids:
            item = {"id": f"{record}-p{i}", **item}
        _check_item_fields(path, item, record, i, spec)
        if not isinstance(item["id"], str):
            item = {**item, "id": as_id(path, item["id"], record, f"profile[{i}].id")}
        if item["id"] in positions:
            raise input_error(path, f"duplicate item id {item['id']!r} (also profile[{positions[item['id']]}])",
                              record=record, field=f"profile[{i}].id")
        positions[item["id"]] = i
        items.append(item)
    return items


def _check_item_fields(path: Path, item: dict, record: str, index: int, spec: TaskSpec) -> None:
    """The item needs an id and every field of one of the task's layouts; else name the closest layout's gap."""
    gaps = [[name for name in ("id", *shape.fields) if name not in item] for shape in spec.item_shapes]
    if all(gaps):
        layouts = "; or ".join(", ".join(("id", *shape.fields)) + ("" if k == 0 else f" ({shape.source})")
                               for k, shape in enumerate(spec.item_shapes))
        closest = min(gaps, key=len)
        raise input_error(path, f"missing (a {spec.name} profile item needs {layouts})",
                          record=record, field=f"profile[{index}].{closest[0]}")


def _question(path: Path, index: int, rec: dict, spec: TaskSpec) -> Example:
    """A LaMP question, merged question or LongLaMP row.

    LongLaMP rows carry no id: they get ``<user id>-<row index>`` (index in the file, from 0), stable as
    long as the file is not reordered; writers then write it as ``"id"``.
    """
    user_field = spec.user_id_field if spec.user_id_field in rec else "user_id"
    label = rec.get("id") if isinstance(rec.get("id"), (str, int)) else f"#{index}"
    user_id = rec.get(user_field)
    if user_id is not None:
        user_id = as_id(path, user_id, label, user_field)
    elif spec.user_id_required:
        raise input_error(path, f"missing (every {spec.name} record names its user in "
                                f"'{spec.user_id_field}')", record=label, field=spec.user_id_field)
    if "id" in rec:
        qid = as_id(path, rec["id"], label, "id")
    elif spec.benchmark == "LongLaMP" and user_id is not None:
        qid = f"{user_id}-{index}"
    else:
        raise input_error(path, "missing", record=label, field="id")
    known = {"id", "input", "output", "profile", user_field}
    return Example(
        id=qid, user_id=user_id, task=spec.name,
        input=_as_text(path, rec.get("input", _MISSING), qid, "input"),
        target=_as_text(path, rec.get("output", _MISSING), qid, "output", optional=True),
        profile=_profile(path, rec.get("profile", _MISSING), qid, spec),
        extra={k: v for k, v in rec.items() if k not in known})


def _oppu_user(path: Path, index: int, rec: dict, spec: TaskSpec) -> list[Example]:
    """One OPPU/CoPe user: one Example per query, all sharing the user's profile.

    The user's own unknown fields go to ``extra[USER_FIELDS]`` of each query, so they survive a trip
    through the LaMP layout and back.
    """
    key = next((k for k in ("user_id", "user_name") if k in rec), None)
    if key is None:
        raise input_error(path, "missing user id ('user_id' or 'user_name')", record=f"#{index}",
                          field="user_id")
    user_id = as_id(path, rec[key], f"#{index}", key)
    profile = _profile(path, rec.get("profile", _MISSING), user_id, spec)
    queries = rec["query"]
    if not isinstance(queries, list):
        raise input_error(path, "must be a list", record=user_id, field="query")
    user_fields = {k: v for k, v in rec.items() if k not in (key, "profile", "query")}
    examples = []
    for i, query in enumerate(queries):
        if not isinstance(query, dict):
            raise input_error(path, "must be an object", record=user_id, field=f"query[{i}]")
        qid = as_id(path, query.get("id", _MISSING), user_id, f"query[{i}].id")
        extra = {k: v for k, v in query.items() if k not in ("id", "input", "gold")}
        if user_fields:
            extra[USER_FIELDS] = user_fields
        examples.append(Example(
            id=qid, user_id=user_id, task=spec.name, profile=profile, extra=extra,
            input=_as_text(path, query.get("input", _MISSING), qid, f"query[{i}].input"),
            target=_as_text(path, query.get("gold", _MISSING), qid, f"query[{i}].gold", optional=True)))
    return examples


def _examples_of(path: Path, index: int, rec: Any, spec: TaskSpec) -> list[Example]:
    if not isinstance(rec, dict):
        raise input_error(path, f"must be an object, got {type(rec).__name__}", record=f"#{index}")
    if "query" in rec:
        return _oppu_user(path, index, rec, spec)
    if "input" in rec:
        return [_question(path, index, rec, spec)]
    if "output" in rec:
        raise input_error(path, "a gold record, not a question: pass this file as the outputs file",
                          record=rec.get("id", f"#{index}"))
    raise input_error(path, "missing (a question needs 'input' and 'profile'; an OPPU user needs 'query')",
                      record=rec.get("id", f"#{index}"), field="input")


def _resolve_task(task: str | None, sources: Iterable[tuple[Path, Any]], path: Path,
                  items: Iterable[Any] = ()) -> TaskSpec:
    """The task from the argument and/or the files' "task" fields, which must all agree.

    A name that may mean several tasks (an old news "LaMP_2") is told apart by the profile ``items``'
    labels (``data.tasks.task_of_file``).
    """
    if task is not None:
        get_task(task)                      # an unknown flag is reported as the flag's, not a file's, error
    items = [item for item in items if isinstance(item, Mapping)]
    spec = None
    for source, value in sources:
        if value is None:
            continue
        try:
            spec = task_of_file(value, items=items, requested=spec.name if spec is not None else task)
        except InputError as err:
            raise input_error(source, str(err), field="task") from None
    if spec is None:
        if task is None:
            raise input_error(path, "the task is unknown: pass the task (--task) or an outputs file with a "
                                    "'task' field")
        spec = task_of_file(task, items=items)
    return spec


def _raw_ids(rec: Any) -> list[str]:
    """The question ids of a raw record, for error messages only."""
    if not isinstance(rec, dict):
        return []
    if isinstance(rec.get("query"), list):
        return [str(q.get("id")) for q in rec["query"] if isinstance(q, dict)]
    return [str(rec["id"])] if "id" in rec else []


def _some(ids: Iterable[str], count: int) -> str:
    return ", ".join(repr(i) for i in itertools.islice(ids, count))


# ----------------------------------------------------------------------------- public loaders

def read_golds(path: str | Path, task: str | None = None) -> tuple[str, dict[str, str]]:
    """Read a ``{"task", "golds": [{"id", "output"}]}`` file (golds, predictions, OPPU label files).

    Returns the canonical task name (any alias in the file, e.g. PEFT's "LaMP-1", is resolved; an old
    news file saying "LaMP_2" is LaMP_2N by its labels) and ``{id: output}``; integer ids become strings.
    """
    if task is not None:
        get_task(task)                      # an unknown flag is reported as the flag's, not the file's, error
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
        raise input_error(path, "expected an object {\"task\", \"golds\": [{\"id\", \"output\"}]}")
    if task is None and data.get("task") is None:
        raise input_error(path, "missing", field="task")
    golds: dict[str, str] = {}
    for i, gold in enumerate(data["golds"]):
        if not isinstance(gold, dict):
            raise input_error(path, "must be an object", record=f"#{i}", field="golds")
        if "input" in gold:
            raise input_error(path, "holds questions, not golds (the Avocado test-file layout): "
                                    "load it as a questions file")
        gid = as_id(path, gold.get("id", _MISSING), f"#{i}", "id")
        output = _as_text(path, gold.get("output", _MISSING), gid, "output")
        if gid in golds:
            raise input_error(path, "duplicate id", record=gid, field="id")
        golds[gid] = output
    try:
        named = data["task"] if data.get("task") is not None else task
        spec = task_of_file(named, golds.values(), requested=task)
    except InputError as err:
        raise input_error(path, str(err), field="task") from None
    return spec.name, golds


def _questions_and_header(path: Path) -> tuple[dict, Iterator[Any]]:
    """The raw question records, and the other top-level fields when they are wrapped in an object."""
    records = iter_records(path)
    first = next(records, _MISSING)
    if first is _MISSING:
        return {}, iter(())
    if isinstance(first, dict) and isinstance(first.get("golds"), list) and "input" not in first:
        # The Avocado script writes test questions as {"task", "golds": [questions]} (spec lamp.md 11).
        if next(records, _MISSING) is not _MISSING:
            raise input_error(path, "unexpected data after the {\"task\", \"golds\"} object")
        golds = first["golds"]
        if golds and isinstance(golds[0], dict) and "input" not in golds[0] and "query" not in golds[0]:
            raise input_error(path, "an outputs file ({\"task\", \"golds\"}), not questions: "
                                    "pass it as the outputs file")
        return {k: v for k, v in first.items() if k != "golds"}, iter(golds)
    return {}, itertools.chain([first], records)


def iter_examples(questions_path: str | Path, outputs_path: str | Path | None = None,
                  task: str | None = None, limit: int | None = None) -> Iterator[Example]:
    """Stream the Examples of a questions / records / OPPU file, joined with the golds of ``outputs_path``.

    The task comes from ``task`` (any alias) or the files' ``"task"`` fields; they must agree. With an
    outputs file every question needs a gold and every gold a question (a question's own ``"output"`` /
    ``"gold"``, if any, must equal it). Ids must be unique. Records are read lazily: nothing is parsed
    before the first ``next()``, and arrays, JSON Lines and parquet are never held whole in memory (only
    the small outputs files and the Avocado ``{"task", "golds"}`` wrapper are read whole).
    """
    path = Path(questions_path)
    golds = None
    sources = []
    if outputs_path is not None:
        golds_task, golds = read_golds(outputs_path, task)
        sources.append((Path(outputs_path), golds_task))
    header, records = _questions_and_header(path)
    first = next(records, _MISSING)
    if first is not _MISSING:
        records = itertools.chain([first], records)
    first_items = first.get("profile") if isinstance(first, dict) else None
    spec = _resolve_task(task, [*sources, (path, header.get("task"))], path,
                         first_items if isinstance(first_items, list) else ())
    if limit is not None and limit <= 0:
        return
    seen: set[str] = set()
    indexed = enumerate(records)
    for index, rec in indexed:
        for example in _examples_of(path, index, rec, spec):
            if example.id in seen:
                raise input_error(path, "duplicate id", record=example.id, field="id")
            seen.add(example.id)
            if golds is not None:
                gold = golds.get(example.id, _MISSING)
                if gold is _MISSING:
                    later = (i for _, r in indexed for i in _raw_ids(r) if i not in golds)
                    raise input_error(path, f"no gold in {Path(outputs_path).name} for questions "
                                            f"{_some(itertools.chain([example.id], later), 3)}",
                                      record=example.id, field="id")
                if example.target is not None and example.target != gold:
                    raise input_error(path, f"differs from the gold in {Path(outputs_path).name}",
                                      record=example.id, field="output")
                example.target = gold
            yield example
            if len(seen) == limit:
                return
    if golds is not None and len(seen) < len(golds):
        unmatched = [gid for gid in golds if gid not in seen]
        raise input_error(outputs_path, f"{len(unmatched)} gold id(s) have no question in {path.name}: "
                                        f"{_some(unmatched, 3)}")


def load_examples(questions_path: str | Path, outputs_path: str | Path | None = None,
                  task: str | None = None, limit: int | None = None) -> list[Example]:
    """All Examples of a file (see ``iter_examples``)."""
    return list(iter_examples(questions_path, outputs_path, task=task, limit=limit))


# ----------------------------------------------------------------------------- writers

def lamp_question(example: Example) -> dict:
    """The LaMP questions-file record of an Example (its gold goes to the outputs file)."""
    record = {"id": example.id, "input": example.input, "profile": example.profile}
    if example.user_id is not None:
        record["user_id"] = example.user_id
    return {**record, **example.extra}


def longlamp_record(example: Example, spec: TaskSpec) -> dict:
    """The LongLaMP row of an Example: user field from the registry, id, input, output, profile."""
    record = {} if example.user_id is None else {spec.user_id_field: example.user_id}
    record.update(id=example.id, input=example.input)
    if example.target is not None:
        record["output"] = example.target
    return {**record, "profile": example.profile, **example.extra}


def _golds(examples: Iterable[Example], path: Path) -> list[dict]:
    golds = []
    for example in examples:
        if example.target is None:
            raise input_error(path, "no gold output to write", record=example.id, field="output")
        golds.append({"id": example.id, "output": example.target})
    return golds


def write_predictions(path: str | Path, task_name: str, predictions: Mapping[str, str]) -> Path:
    """Write ``{"task", "golds": [{"id", "output"}]}`` (the official scorer's layout) atomically."""
    golds = [{"id": str(pid), "output": output} for pid, output in predictions.items()]
    return atomic_write_json(path, {"task": get_task(task_name).name, "golds": golds})


def write_lamp_questions(path: str | Path, examples: Iterable[Example]) -> Path:
    return atomic_write_json(path, [lamp_question(e) for e in examples])


def write_lamp_outputs(path: str | Path, task: str, examples: Iterable[Example]) -> Path:
    """The golds of ``examples`` as an official outputs file; every example needs a target."""
    return atomic_write_json(path, {"task": get_task(task).name, "golds": _golds(examples, Path(path))})


def write_longlamp_records(path: str | Path, examples: Iterable[Example], task: str) -> Path:
    """LongLaMP rows as a JSON list, or JSON Lines when ``path`` ends in ``.jsonl``."""
    spec = get_task(task)
    rows = (longlamp_record(e, spec) for e in examples)
    if Path(path).suffix == ".jsonl":
        return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return atomic_write_json(path, list(rows))
