"""The one prompt builder every method uses (lamp_rag, ropg, rspg, cope, curp).

Two renderings of "question + retrieved profile items":

* ``"official"``: the LaMP string prompt (spec lamp.md 4.1-4.3) with the reference token-budget rule,
  built from the task's :class:`~data.tasks.ProfileTemplate`. Use it for encoder-decoder models
  (FlanT5) and whenever numbers are compared with published ones.
* ``"chat"``: each retrieved item becomes an earlier user/assistant exchange (the item written in the
  task's input template, answered with the item's output), then the question. Small decoder-only chat
  models copy the official prompt's instruction text instead of the user's pattern; on LaMP_4-format
  text SmolLM2-135M-Instruct (greedy) scored ROUGE-1 0.327 with 3 items as chat turns against 0.239
  without profile, while the official string prompt scored lower with profile than without.

``render_prompt`` picks between them so a method calls one function; ``default_prompt_style`` says
which one a model gets by default. ``build_study_prompt`` renders the user-profile role study's own
templates (``study_*``) with the study's budgets.
"""
from __future__ import annotations

import logging
import math
import re
from contextlib import contextmanager
from typing import Mapping, Sequence

from data.errors import InputError, input_error
from data.tasks import ProfileTemplate, TaskSpec

log = logging.getLogger("lampkit.prompts")

PROMPT_STYLES = ("official", "chat")
INPUT_SHARE = 0.6           # the reference reserves at most this share of max_length for the input
INPUT_SHARE_STEP = 0.1      # ... and lowers it by this step each time the profile does not fit
JOIN_TOKENS = 2             # tokens the reference charges for each ", and " between items
TITLE_NEED_TOKENS = 2       # LaMP_1: the reference charges a literal 2 tokens per quoted title


class _ProfileDoesNotFit(Exception):
    """The budget left for the profile is too small at the current input share."""


def token_count(tokenizer, text: str, special_tokens: bool = True) -> int:
    """Tokens of ``text``, by default including the special tokens the tokenizer adds (T5's EOS, BERT's CLS/SEP)."""
    return len(tokenizer(text, add_special_tokens=special_tokens)["input_ids"])


def build_prompt(spec: TaskSpec, input_text: str, items: Sequence[Mapping], tokenizer=None,
                 template: str = "official", max_length: int = 256) -> str:
    """The official LaMP prompt: ``items`` rendered with the task's template around ``input_text``.

    With a tokenizer, each item's variable field is cut so the profile fits the reference budget:
    ``P = max_length - min(len(input), int(share * max_length))`` split equally over the items, the
    unused tokens of one item carried over to the next. When the profile does not fit, the input share
    drops by 0.1 and the budget is computed again; below 0 the input is returned without profile (and
    a warning is logged). Without a tokenizer nothing is truncated. No items: the input unchanged.
    """
    profile_template = spec.template(template)
    if not items:
        return input_text
    if tokenizer is None:
        return _wrap(spec, profile_template, input_text, [_render_item(spec, profile_template, item)
                                                          for item in items])
    input_tokens = token_count(tokenizer, input_text)
    share = INPUT_SHARE
    # Same float steps as the reference (0.6, 0.5, ..., ~3e-17), so it tries the same 7 budgets.
    while share >= 0:
        budget = max_length - min(input_tokens, int(share * max_length))
        try:
            rendered = _fit_items(spec, profile_template, items, tokenizer, budget)
        except _ProfileDoesNotFit:
            share -= INPUT_SHARE_STEP
            continue
        return _wrap(spec, profile_template, input_text, rendered)
    log.warning("%s: %d profile item(s) do not fit in max_length=%d; using the input without profile",
                spec.name, len(items), max_length)
    return input_text


def _fit_items(spec: TaskSpec, profile_template: ProfileTemplate, items: Sequence[Mapping], tokenizer,
               budget: int) -> list[str]:
    """Render the items with their variable field cut to the per-item share of ``budget`` tokens."""
    count = len(items)
    field = profile_template.field
    if profile_template.insert_after_title:
        per_item = (budget - JOIN_TOKENS * (count - 1)) // count
    else:
        suffix = profile_template.budget_suffix
        suffix_tokens = token_count(tokenizer, suffix) if suffix else 0
        per_item = (budget - 1 - JOIN_TOKENS * (count - 1) - suffix_tokens) // count
    saved = 0
    rendered = []
    for item in items:
        if field is None:       # nothing variable to cut (e.g. a list of tags)
            rendered.append(_render_item(spec, profile_template, item))
            continue
        with _naming_missing_fields(spec, item):
            text = str(item[field])
            need = (TITLE_NEED_TOKENS if profile_template.insert_after_title
                    else token_count(tokenizer, profile_template.need_string(item)))
        ids = _truncate(tokenizer, text, per_item + saved - need)
        saved += per_item - len(ids) - need
        truncated = tokenizer.decode(ids, skip_special_tokens=True)
        rendered.append(_render_item(spec, profile_template, {**item, field: truncated}))
    return rendered


def _truncate(tokenizer, text: str, max_tokens: int) -> list[int]:
    """Token ids of ``text`` (special tokens included) cut to ``max_tokens``."""
    if max_tokens <= 0:
        raise _ProfileDoesNotFit
    ids = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
    # HF tokenizers silently skip truncation when max_length cannot even hold their special tokens.
    if len(ids) > max_tokens:
        raise _ProfileDoesNotFit
    return ids


def _wrap(spec: TaskSpec, profile_template: ProfileTemplate, input_text: str, rendered: list[str]) -> str:
    joined = profile_template.join.join(rendered)
    if profile_template.insert_after is not None:
        match = re.search(profile_template.insert_after, input_text)
        if match is None:
            log.warning("%s: nothing in the input matches %r to put the profile after; using the input alone",
                        spec.name, profile_template.insert_after)
            return input_text
        return f"{input_text[:match.end()]} {joined}{input_text[match.end():]}"
    if profile_template.insert_after_title:
        position = input_text.find("title")
        if position < 0:
            log.warning("%s: no 'title' in the input to put the profile after; using the input alone",
                        spec.name)
            return input_text
        cut = position + len("title")
        return f"{input_text[:cut]}, and {joined}{input_text[cut:]}"
    return profile_template.wrap.format(profile=joined, input=input_text)


def _render_item(spec: TaskSpec, profile_template: ProfileTemplate, item: Mapping) -> str:
    with _naming_missing_fields(spec, item):
        return profile_template.item.format(**item)


@contextmanager
def _naming_missing_fields(spec: TaskSpec, item: Mapping):
    """Turn a template's KeyError into an InputError naming the task, the item id and the field."""
    try:
        yield
    except KeyError as err:
        raise input_error(spec.name, "missing", record=item.get("id"), field=err.args[0]) from None


def build_study_prompt(spec: TaskSpec, input_text: str, items: Sequence[Mapping], tokenizer, template: str,
                       input_max_length: int = 512, task_max_length: int = 256) -> str:
    """The profile study's prompt (spec profile_study A6): ``items`` in the task's ``template`` around the input.

    The study's window is ``input_max_length`` tokens, of which ``task_max_length`` are left to the input
    and the rest, B, to the profile (the finished prompt is later cut to the window from the right, so the
    profile, written first, never pushes the question out). A "per_item" template gives each of the k items
    (B - ``reserve_tokens``) / k tokens (``budget_shrinks_with_input``: (window - max(task share, input
    tokens)) / k); an item longer than that loses ceil(excess) + 1 tokens of its variable field, the
    study's rule. A "block" template (the outputs-only ablations) joins the items and cuts the block as a
    whole so that it and the template's wording fit in B. Lengths count the tokenizer's special tokens, as
    the study's ``tokenizer.encode`` did. No items: the input unchanged.
    """
    profile_template = spec.template(template)
    if not items:
        return input_text
    profile_tokens = input_max_length - task_max_length
    if profile_template.budget == "block":
        wording = token_count(tokenizer, profile_template.wrap.format(profile="", input=""), special_tokens=False)
        block = profile_template.join.join(_render_item(spec, profile_template, item) for item in items)
        return _wrap(spec, profile_template, input_text, [_cut_to_budget(tokenizer, block, profile_tokens - wording)])
    if profile_template.budget != "per_item":
        raise ValueError(f"{spec.name} template {template!r} is not one of the study's (budget "
                         f"{profile_template.budget!r})")
    if profile_template.budget_shrinks_with_input:
        taken = max(task_max_length, token_count(tokenizer, input_text))
        per_item = max(input_max_length - taken, 0) / len(items)
    else:
        per_item = (profile_tokens - profile_template.reserve_tokens) / len(items)
    rendered = []
    for item in items:
        text = _render_item(spec, profile_template, item)
        excess = token_count(tokenizer, text) - per_item
        if excess > 0 and profile_template.field is not None:
            with _naming_missing_fields(spec, item):
                ids = tokenizer(str(item[profile_template.field]))["input_ids"]
            kept = ids[:max(len(ids) - math.ceil(excess) - 1, 0)]
            cut = tokenizer.decode(kept, skip_special_tokens=True)
            text = _render_item(spec, profile_template, {**item, profile_template.field: cut})
        rendered.append(text)
    return _wrap(spec, profile_template, input_text, rendered)


def _cut_to_budget(tokenizer, text: str, budget: float) -> str:
    """``text`` cut by the study's rule: over ``budget`` tokens, ceil(excess) + 1 tokens go from the end."""
    ids = tokenizer(text)["input_ids"]
    if len(ids) <= budget:
        return text
    return tokenizer.decode(ids[:max(len(ids) - math.ceil(len(ids) - budget) - 1, 0)], skip_special_tokens=True)


def build_messages(spec: TaskSpec, input_text: str, items: Sequence[Mapping], tokenizer=None,
                   max_item_tokens: int | None = None, system: str | None = None) -> list[dict]:
    """The chat rendering: each item as an earlier exchange, then the question.

    An item becomes ``user: spec.item_prompt(item)`` (the item written in the task's input template)
    and ``assistant: spec.item_output(item)``. With a tokenizer and ``max_item_tokens``, the item's
    input text (``spec.item_input_field_of(item)``) is cut to that many tokens (no special tokens counted: the
    chat template adds its own once per turn).
    """
    if max_item_tokens is not None and max_item_tokens <= 0:
        raise InputError(f"max_item_tokens must be positive, got {max_item_tokens}")
    messages = [{"role": "system", "content": system}] if system else []
    for item in items:
        shown = dict(item)
        field = spec.item_input_field_of(item)
        if tokenizer is not None and max_item_tokens is not None and field is not None:
            with _naming_missing_fields(spec, item):
                shown[field] = _cut_text(tokenizer, str(item[field]), max_item_tokens)
        with _naming_missing_fields(spec, item):
            messages.append({"role": "user", "content": spec.item_prompt(shown)})
            messages.append({"role": "assistant", "content": spec.item_output(item)})
    messages.append({"role": "user", "content": input_text})
    return messages


def _cut_text(tokenizer, text: str, max_tokens: int) -> str:
    """``text`` cut to its first ``max_tokens`` tokens; text that fits is kept byte for byte."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def default_prompt_style(is_encoder_decoder: bool, has_chat_template: bool) -> str:
    """"chat" for decoder-only chat models (they copy the official instruction text), else "official"."""
    return "chat" if has_chat_template and not is_encoder_decoder else "official"


def render_prompt(spec: TaskSpec, input_text: str, items: Sequence[Mapping], style: str, tokenizer=None,
                  max_length: int = 256, template: str = "official", max_item_tokens: int | None = None,
                  system: str | None = None) -> str | list[dict]:
    """One entry point for methods: the official string prompt or the chat message list.

    ``max_length`` and ``template`` apply to "official"; ``max_item_tokens`` and ``system`` to "chat".
    """
    if style == "official":
        return build_prompt(spec, input_text, items, tokenizer=tokenizer, template=template,
                            max_length=max_length)
    if style == "chat":
        return build_messages(spec, input_text, items, tokenizer=tokenizer, max_item_tokens=max_item_tokens,
                              system=system)
    raise InputError(f"unknown prompt style {style!r}; available: {', '.join(PROMPT_STYLES)}")
