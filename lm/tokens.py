"""Add special tokens to a tokenizer and grow the model's embeddings to match."""
from __future__ import annotations

from typing import Sequence


def add_special_tokens(model, tokenizer, tokens: Sequence[str]) -> list[int]:
    """Register `tokens` as special tokens (kept whole, skipped when decoding) and return their ids.

    Tokens already in the vocabulary keep their ids. Embeddings are only grown, never shrunk: some
    models pad their embedding matrix beyond the tokenizer's size.
    """
    tokenizer.add_tokens(list(tokens), special_tokens=True)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(list(tokens))
