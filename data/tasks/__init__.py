"""The task registry: one declarative TaskSpec per benchmark task, the single source of task knowledge.

Task modules in this package (``lamp.py``, ``longlamp.py``, ...) call :func:`register` at import; they
are found automatically. Every method reads aliases, label sets, query extraction, retrieval documents,
prompt templates and metrics from here instead of branching on task names.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Mapping

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
    """

    item: str
    wrap: str = "{profile}. {input}"
    field: str | None = None
    need: str | None = None
    join: str = ", and "
    budget_suffix: str = ""
    insert_after_title: bool = False

    def need_string(self, item: Mapping) -> str:
        if self.need is not None:
            return self.need.format(**item)
        if self.field is None:
            return self.item.format(**item)
        return self.item.format(**{**item, self.field: " "})


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

    def document(self, item: Mapping, use_date: bool = False) -> str:
        text = " ".join(str(item.get(f, "")) for f in self.document_fields)
        if use_date and self.date_field and item.get(self.date_field) is not None:
            text += f" date: {item[self.date_field]}"
        return text

    def item_prompt(self, item: Mapping) -> str:
        return self.item_prompt_template.format(**item)

    def item_output(self, item: Mapping) -> str:
        return str(item[self.item_output_field]) if self.item_output_field else ""

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
