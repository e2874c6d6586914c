"""lamp_rag's own part of a run: prompt style, the official prompt cut and the prompts (retrieval: lamp_rag.retrieval).

Generation, resuming and the result files are the shared runtime's (``runtime.generation``)::

    prompts = build_prompts(spec, examples, items, resolve_prompt_style("auto", handle), handle.tokenizer)
    scores = generate_and_score(spec, handle, examples, prompts, "runs/x", {"max_new_tokens": 32})
"""
from __future__ import annotations

from typing import Mapping, Sequence

from tqdm.auto import tqdm

from data.prompts import default_prompt_style, render_prompt
from data.records import Example
from data.tasks import TaskSpec
from lm.prompting import Prompt


def resolve_prompt_style(style: str, handle) -> str:
    """"auto" becomes the model's default: chat turns for decoder-only chat models, else the official string."""
    if style == "auto":
        return default_prompt_style(handle.is_encoder_decoder, handle.has_chat_template)
    return style


def official_prompt_cut(style: str, max_length: int) -> int | None:
    """Prompt tokens fed to the model: the official style cuts the finished prompt to ``max_length`` tokens
    FROM THE RIGHT, as the reference tokenizes it with ``truncation=True, max_length=max_length`` in training
    and evaluation (spec lamp.md 4.1 step 3, 6.1; the end of an over-long input is lost, the profile kept);
    None for the chat style, which keeps lm's default (left cut to the model's context only)."""
    return max_length if style == "official" else None


def prompt_cut_options(max_prompt_tokens: int | None) -> dict:
    """handle.generate() options for :func:`official_prompt_cut`'s result ({} when there is no cut)."""
    if max_prompt_tokens is None:
        return {}
    return {"max_input_tokens": max_prompt_tokens, "truncation_side": "right"}


def build_prompts(spec: TaskSpec, examples: Sequence[Example], items_per_example: Sequence[Sequence[Mapping]] | None,
                  style: str, tokenizer=None, max_length: int = 256, **render_options) -> list[Prompt]:
    """One prompt per example: its input plus its retrieved profile items (None: no profile).

    ``style`` is "official" (string, token budget ``max_length``) or "chat" (message list);
    ``render_options`` go to :func:`data.prompts.render_prompt` (``max_item_tokens``, ``system``, ``template``).
    """
    if items_per_example is None:
        items_per_example = [()] * len(examples)
    if len(items_per_example) != len(examples):
        raise ValueError(f"{len(items_per_example)} item lists for {len(examples)} examples")
    return [render_prompt(spec, example.input, items, style, tokenizer=tokenizer, max_length=max_length,
                          **render_options)
            for example, items in tqdm(zip(examples, items_per_example), total=len(examples),
                                       desc="prompts", unit="ex")]
