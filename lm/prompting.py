"""Turn prompts (strings or chat message lists) into token ids: chat template, special tokens, truncation."""
from __future__ import annotations

import logging
from typing import Sequence, Union

from data.errors import InputError

log = logging.getLogger(__name__)

Prompt = Union[str, Sequence[dict]]   # a raw string, or [{"role": ..., "content": ...}, ...]

# Config fields that hold a model's context length, in the order architectures commonly use them.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
# Tokenizers without a real limit report a huge sentinel as model_max_length.
_NO_LIMIT = 1_000_000


def uses_chat(handle, chat: bool | None) -> bool:
    """chat=None: the template is used when the model has one; True requires one; False never uses it."""
    if chat is None:
        return handle.has_chat_template
    if chat and not handle.has_chat_template:
        raise InputError(f"{handle.name}: chat requested but the model has no chat template")
    return bool(chat)


def render(tokenizer, prompt: Prompt, chat: bool) -> str:
    """The text the model sees: a string prompt becomes one user turn when the chat template is used."""
    if chat:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(prompt, str):
        raise ValueError("chat message lists need a model with a chat template and chat=None or True")
    return prompt


def encode_prompts(handle, prompts: Sequence[Prompt], chat: bool | None,
                   max_tokens: int | None, truncation_side: str = "left") -> list[list[int]]:
    """Token ids per prompt; over-long prompts are cut to max_tokens.

    truncation_side="left" (default) drops the beginning so the question at the end survives (a leading
    BOS is kept). "right" keeps the first max_tokens tokens like a Hugging Face tokenizer called with
    ``truncation=True, max_length=max_tokens``: the text is cut, the special tokens the tokenizer adds
    (BOS, T5's EOS) stay; with a chat template the string prompt's content is cut so that the rendered
    turn, generation prompt included, fits.
    """
    if truncation_side not in ("left", "right"):
        raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
    use_chat = uses_chat(handle, chat)
    texts = [render(handle.tokenizer, prompt, use_chat) for prompt in prompts]
    # A rendered chat template already contains every special token the model expects.
    encoded = tokenize(handle.tokenizer, texts, add_special_tokens=not use_chat)
    if max_tokens is None:
        return encoded
    if truncation_side == "left":
        truncated = [truncate_left(ids, max_tokens, handle.tokenizer.bos_token_id) for ids in encoded]
    else:
        truncated = [ids if len(ids) <= max_tokens
                     else _keep_start(handle.tokenizer, prompt, ids, max_tokens, use_chat)
                     for prompt, ids in zip(prompts, encoded)]
    cut = sum(len(a) != len(b) for a, b in zip(encoded, truncated))
    if cut:
        log.warning("%d of %d prompts were longer than %d tokens and lost their %s", cut, len(encoded),
                    max_tokens, "beginning" if truncation_side == "left" else "end")
    return truncated


def _keep_start(tokenizer, prompt: Prompt, ids: list[int], max_tokens: int, use_chat: bool) -> list[int]:
    """The over-long prompt ``ids`` cut from the right (see encode_prompts)."""
    if not isinstance(prompt, str):
        raise ValueError("truncation_side='right' needs string prompts, not chat message lists")
    if not use_chat:
        return tokenize(tokenizer, [prompt], truncation=True, max_length=max_tokens)[0]
    # Chat template: cut the user content, re-render; decoding can merge tokens, so shrink until it fits.
    content = tokenize(tokenizer, [prompt], add_special_tokens=False)[0]
    keep = max(max_tokens - (len(ids) - len(content)), 0)
    while True:
        text = render(tokenizer, tokenizer.decode(content[:keep], skip_special_tokens=True), True)
        cut = tokenize(tokenizer, [text], add_special_tokens=False)[0]
        if len(cut) <= max_tokens or keep == 0:
            return cut
        keep = max(keep - (len(cut) - max_tokens), 0)


def tokenize(tokenizer, texts: Sequence[str], **options) -> list[list[int]]:
    """input_ids per text; an empty list gives [] (fast tokenizers fail on an empty batch)."""
    return tokenizer(list(texts), **options)["input_ids"] if texts else []


def truncate_left(ids: list[int], max_tokens: int, bos_id: int | None) -> list[int]:
    """Keep the last max_tokens ids, and a leading BOS when there was one (models rely on it)."""
    if len(ids) <= max_tokens:
        return ids
    if bos_id is not None and ids and ids[0] == bos_id and max_tokens > 1:
        return [bos_id] + ids[len(ids) - max_tokens + 1:]
    return ids[len(ids) - max_tokens:]


def context_length(handle) -> int | None:
    """The longest sequence the model accepts, or None when neither the config nor the tokenizer limits it."""
    for field in _CONTEXT_FIELDS:
        value = getattr(handle.config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    return tokenizer_limit(handle.tokenizer)


def tokenizer_limit(tokenizer) -> int | None:
    """The tokenizer's model_max_length, or None for the huge sentinel of tokenizers without a limit."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < _NO_LIMIT else None


def input_budget(handle, max_new_tokens: int, max_input_tokens: int | None) -> int | None:
    """Prompt tokens allowed: explicit max_input_tokens, else the context minus the decoder-only output room."""
    if max_input_tokens is not None:
        if max_input_tokens < 1:
            raise InputError(f"max_input_tokens must be positive, got {max_input_tokens}")
        return max_input_tokens
    limit = context_length(handle)
    if limit is None or handle.is_encoder_decoder:
        return limit
    if limit <= max_new_tokens:
        raise InputError(f"{handle.name}: max_new_tokens={max_new_tokens} leaves no room for a prompt "
                         f"in its {limit}-token context")
    return limit - max_new_tokens
