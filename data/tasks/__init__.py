"""The task registry: one declarative TaskSpec per benchmark task, the single source of task knowledge.

Task modules in this package (``lamp.py``, ``longlamp.py``, ...) call :func:`register` at import; they
are found automatically. Every method reads aliases, label sets, query extraction, retrieval documents,
prompt templates and metrics from here instead of branching on task names.
"""
from __future__ import annotations

import difflib
import importlib
import itertools
import pkgutil
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping

from data.errors import InputError

# Tasks whose length is at most this answer in one line (labels, ratings, headlines, titles, subjects,
# tweets); long-form tasks (LongLaMP, 256 tokens) write paragraphs.
SINGLE_LINE_MAX_TOKENS = 64


@dataclass(frozen=True)
class ProfileTemplate:
    """How retrieved profile items become prompt text (LaMP `prompts.py` style).

    ``item`` renders one profile item (str.format over its fields); ``field`` is the one variable text
    field that the token budget may truncate; ``need`` is the string whose length is charged per item
    (default: ``item`` with ``field`` replaced by a single space, as the official code measures it);
    items are joined with ``join`` and ``wrap`` places them around the question (``{profile}``,
    ``{input}``); ``budget_suffix`` is extra text counted against the budget; ``insert_after_title``
    puts the profile right after the word "title" of the input (LaMP_1).

    The profile study's templates (``study_*``, spec profile_study A6) budget differently: ``budget``
    "per_item" gives every item (window - task tokens - ``reserve_tokens``) / k tokens, or, with
    ``budget_shrinks_with_input``, what an input longer than the task share leaves; "block" cuts the joined
    items as a whole. ``insert_after`` (a regex) puts the profile after its first match in the input.
    """

    item: str
    wrap: str = "{profile}. {input}"
    field: str | None = None
    need: str | None = None
    join: str = ", and "
    budget_suffix: str = ""
    insert_after_title: bool = False
    budget: str = "shared"                 # "shared" (official LaMP), "per_item" or "block" (the study's)
    reserve_tokens: int = 0
    budget_shrinks_with_input: bool = False
    insert_after: str | None = None

    def need_string(self, item: Mapping) -> str:
        if self.need is not None:
            return self.need.format(**item)
        if self.field is None:
            return self.item.format(**item)
        return self.item.format(**{**item, self.field: " "})


@dataclass(frozen=True)
class ItemShape:
    """Another layout in which a task's profile items are released (e.g. OPPU's, spec curp_cope_oppu 4.3).

    A profile item with all of ``fields`` is read with this shape's input/output parts, retrieval document
    and prompt instead of the task's main ones; ``source`` says where the layout comes from (messages).
    """

    fields: tuple[str, ...]
    input_field: str | None
    output_field: str | None
    document_fields: tuple[str, ...]
    prompt_template: str
    source: str


@dataclass(frozen=True)
class TaskSpec:
    name: str
    benchmark: str                                  # "LaMP" | "LongLaMP"
    kind: str                                       # "classification" | "regression" | "generation"
    description: str
    input_template: str                             # how a question's input is written (str.format)
    item_fields: tuple[str, ...]                    # fields every profile item must have
    item_prompt_template: str                       # the task input applied to a profile item
    item_input_field: str | None                    # the profile item's "input" part (profile study)
    item_output_field: str | None                   # the profile item's "output" part
    document_fields: tuple[str, ...]                # joined with spaces into the retrieval document
    metrics: tuple[str, ...]
    best_metric: str
    greater_is_better: bool
    query_marker: str | None = None                 # query = text after the first occurrence
    query_from_quotes: bool = False                 # LaMP_1: the two quoted candidate titles
    labels: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    user_id_field: str = "user_id"
    date_field: str | None = "date"
    max_new_tokens: int = 32
    hf_config: str | None = None                    # LongLaMP dataset config (user split)
    templates: Mapping[str, ProfileTemplate] = field(default_factory=dict)
    text_templates: Mapping[str, str] = field(default_factory=dict)
    example_item: Mapping[str, str] = field(default_factory=dict)
    example_input_fields: Mapping[str, str] = field(default_factory=dict)
    item_variants: tuple[ItemShape, ...] = ()       # other released item layouts, tried in order
    items_have_ids: bool = True                     # False: released items lack "id"; the loader makes them
    user_id_required: bool = False                  # every record names its user (user_id_field)
    legacy_names: tuple[str, ...] = ()              # names older files use for this task (told by labels)
    # The user-profile role study (spec profile_study): its checkpoint metric where it differs from
    # best_metric (A8), and its AVG profile size, the size of RanBM25's pseudo-profiles (A4).
    study_best_metric: str | None = None
    study_pseudo_profile_size: int | None = None
    version: int = 1

    def query(self, input_text: str) -> str:
        """The retrieval query extracted from a question's input (official LaMP/LongLaMP rules).

        A missing marker falls back to the whole input instead of crashing as the reference does.
        """
        if self.query_from_quotes:
            quoted = re.findall(r'"(.*?)"', input_text)
            return " ".join(quoted[1:3]) if len(quoted) >= 3 else " ".join(quoted) or input_text
        if self.query_marker and self.query_marker in input_text:
            return input_text.split(self.query_marker, 1)[1].strip()
        return input_text.strip()

    @cached_property   # read for every profile item in retrieval and loading: built once per spec
    def item_shapes(self) -> tuple[ItemShape, ...]:
        """The main item layout (the benchmark's own), then the variants."""
        main = ItemShape(self.item_fields, self.item_input_field, self.item_output_field, self.document_fields,
                         self.item_prompt_template, self.benchmark)
        return (main, *self.item_variants)

    def item_shape(self, item: Mapping) -> ItemShape:
        """The first layout whose fields the item has (the main one when none fits)."""
        return next((shape for shape in self.item_shapes if all(f in item for f in shape.fields)),
                    self.item_shapes[0])

    def document(self, item: Mapping, use_date: bool = False) -> str:
        text = " ".join(str(item.get(f, "")) for f in self.item_shape(item).document_fields)
        if use_date and self.date_field and item.get(self.date_field) is not None:
            text += f" date: {item[self.date_field]}"
        return text

    def item_prompt(self, item: Mapping) -> str:
        return self.item_shape(item).prompt_template.format(**item)

    def item_input_field_of(self, item: Mapping) -> str | None:
        """The name of the item's "input" field in its layout (``item_input_field`` for the main one)."""
        return self.item_shape(item).input_field

    def item_output(self, item: Mapping) -> str:
        output_field = self.item_shape(item).output_field
        return str(item[output_field]) if output_field else ""

    def label_count(self, outputs: Iterable[object] = (), items: Iterable[Mapping] = ()) -> int:
        """How many outputs, and item outputs, are labels of this task (stripped, as the scorer reads them)."""
        if not self.labels:
            return 0
        item_outputs = (item.get(self.item_shape(item).output_field) for item in items
                        if isinstance(item, Mapping))
        return sum(str(value).strip() in self.labels for value in itertools.chain(outputs, item_outputs))

    def template(self, name: str = "official") -> ProfileTemplate:
        if name not in self.templates:
            raise InputError(f"task {self.name} has no prompt template {name!r}; "
                             f"available: {', '.join(sorted(self.templates))}")
        return self.templates[name]

    def text_template(self, name: str) -> str:
        if name not in self.text_templates:
            raise InputError(f"task {self.name} has no text template {name!r}; "
                             f"available: {', '.join(sorted(self.text_templates))}")
        return self.text_templates[name]

    @property
    def single_line(self) -> bool:
        """Answers are one line: outputs keep their first non-blank line and generation may stop at its end."""
        return self.max_new_tokens <= SINGLE_LINE_MAX_TOKENS

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


_REGISTRY: dict[str, TaskSpec] = {}
_ALIASES: dict[str, str] = {}
_LOADED = False


def _key(name: str) -> str:
    """Alias key: case, '-', '_' and spaces do not matter (LaMP-4 == lamp_4 == lamp4)."""
    return re.sub(r"[-_\s]", "", name).lower()


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name} registered twice")
    for alias in spec.all_names:
        key = _key(alias)
        if key in _ALIASES and _ALIASES[key] != spec.name:
            raise ValueError(f"alias {alias!r} of {spec.name} already names {_ALIASES[key]}")
        _ALIASES[key] = spec.name
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def get_task(name: str) -> TaskSpec:
    """Resolve any alias to its TaskSpec; unknown names raise InputError with suggestions."""
    _load_all()
    canonical = _ALIASES.get(_key(str(name)))
    if canonical is None:
        by_key = {_key(a): a for spec in _REGISTRY.values() for a in spec.all_names}
        close = difflib.get_close_matches(_key(str(name)), sorted(by_key), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(by_key[k] for k in close)}?" if close else ""
        raise InputError(f"unknown task {name!r}{hint} (`python -m data.tasks ls` lists tasks)")
    return _REGISTRY[canonical]


def list_tasks() -> list[TaskSpec]:
    _load_all()
    return [_REGISTRY[name] for name in sorted(_REGISTRY, key=_sort_key)]


def _sort_key(name: str) -> tuple:
    benchmark, _, rest = name.partition("_")
    number = re.match(r"\d+", rest)
    return (benchmark != "LaMP", int(number.group()) if number else 0, rest)


def _readings(name: str) -> list[TaskSpec]:
    """The tasks a file's task name may mean: its own, then tasks that older files called by that name."""
    spec = get_task(name)
    key = _key(str(name))
    return [spec, *(other for other in list_tasks()
                    if other is not spec and key in {_key(legacy) for legacy in other.legacy_names})]


def may_mean(name: str, task: str) -> bool:
    """Whether a file or flag saying ``name`` may hold ``task`` (LaMP_2 may be LaMP_2N, older files)."""
    return get_task(task) in _readings(name)


def task_of_file(name: str, outputs: Iterable[object] = (), items: Iterable[Mapping] = (),
                 requested: str | None = None) -> TaskSpec:
    """The task of a file that says ``name``, told by its labels when the name is ambiguous.

    Before 2024-03-20 LaMP_2 was news categorization: such files say "LaMP_2" and hold news categories.
    A name that tasks claim as a ``legacy_name`` is read as the task whose labels cover the most of
    ``outputs`` (golds, predictions) and of ``items``' outputs (profile items); ties keep the named
    task. ``requested`` (a flag) narrows the choice; a file that cannot hold it raises InputError.
    """
    readings = _readings(name)
    if requested is not None:
        wanted = _readings(requested)
        readings = [spec for spec in readings if spec in wanted]
        if not readings:
            raise InputError(f"is {get_task(name).name} but the task is {get_task(requested).name}")
    if len(readings) == 1:
        return readings[0]
    outputs, items = list(outputs), list(items)
    return max(readings, key=lambda spec: spec.label_count(outputs, items))
