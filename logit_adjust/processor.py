"""The logits processor that adds ``beta * bias(token, user)`` to every row's next-token scores.

    factory = UserBiasFactory(biases, rows, beta=0.1, zero_ids=special_token_ids(tokenizer, model))
    texts = handle.generate(prompts, logits_processor=factory)     # greedy, beam or sampling, batched

``biases`` is a [n_users, V] table (``token_maps.user_biases``) and ``rows[i]`` the table row of
prompt i. ``lm`` calls the factory once per batch with the batch's ORIGINAL prompt indices, so each row
gets its own user's bias however batches are sorted; the processor itself is a plain HF
``LogitsProcessor`` and works with the KV cache (it only sees the scores of the step).
"""
from __future__ import annotations

from typing import Sequence

from transformers import LogitsProcessor


def fit_width(bias, width: int):
    """Zero-pad (or cut) the last dimension to ``width``: models often pad their output layer beyond
    len(tokenizer), and ids past the tokenizer can never be a word anyway."""
    import torch

    if bias.shape[-1] >= width:
        return bias[..., :width]
    return torch.nn.functional.pad(bias, (0, width - bias.shape[-1]))


class UserBiasLogitsProcessor(LogitsProcessor):
    """``scores + beta * bias``, one bias row per prompt of the batch.

    With beam search (or several sequences per prompt) the scores have k rows per prompt in
    repeat_interleave order; the bias rows are repeated the same way. ``zero_ids`` (EOS, PAD, BOS ...)
    always get 0, so the bias never makes a sequence stop early or late. beta == 0 returns the scores
    untouched, bit for bit.
    """

    def __init__(self, bias, beta: float, zero_ids: Sequence[int] = ()):
        self.beta = float(beta)
        self.bias = bias.float()
        ids = [i for i in zero_ids if 0 <= i < bias.shape[-1]]
        if ids:
            self.bias = self.bias.clone()
            self.bias[:, ids] = 0.0
        self._step_bias = None          # beta * bias in the scores' shape, dtype and device

    def __call__(self, input_ids, scores):
        if self.beta == 0:
            return scores
        if self._step_bias is None or self._step_bias.shape != scores.shape or \
                self._step_bias.dtype != scores.dtype or self._step_bias.device != scores.device:
            self._step_bias = self._prepare(scores)
        return scores + self._step_bias

    def _prepare(self, scores):
        prompts = self.bias.shape[0]
        if scores.shape[0] % prompts:
            raise ValueError(f"scores have {scores.shape[0]} rows, not a multiple of the {prompts} bias rows")
        bias = self.bias.repeat_interleave(scores.shape[0] // prompts, dim=0)
        return (self.beta * fit_width(bias, scores.shape[-1])).to(device=scores.device, dtype=scores.dtype)


class UserBiasFactory:
    """Per-batch factory for ``handle.generate(logits_processor=...)``: the batch's rows of the user table.

    Returns None when beta == 0, so that run is exactly the baseline.
    """

    def __init__(self, biases, rows: Sequence[int], beta: float, zero_ids: Sequence[int] = ()):
        import torch

        if len(rows) and max(rows) >= biases.shape[0]:
            raise ValueError(f"row {max(rows)} is outside the {biases.shape[0]}-row bias table")
        self.biases = biases
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)
        self.beta = float(beta)
        self.zero_ids = list(zero_ids)

    def __call__(self, batch_indices: Sequence[int]) -> UserBiasLogitsProcessor | None:
        if self.beta == 0:
            return None
        return UserBiasLogitsProcessor(self.biases[self.rows[list(batch_indices)]], self.beta, self.zero_ids)
