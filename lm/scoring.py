"""Log-likelihood of a target text given a prompt, batched, for causal and encoder-decoder models.

The target is scored as its own tokens (no special tokens added), right after the rendered prompt
(the chat template's assistant turn when chat is used). Each pair may use its own LoRA adapter
(``adapter_names``, see lm.adapters); they travel with the pairs through the length sorting.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Sequence

from data.errors import InputError
from lm.adapters import row_adapter_names
from lm.batching import evaluation_mode, length_sorted_batches, pad_batch
from lm.prompting import Prompt, context_length, encode_prompts, tokenize, truncate_left

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetScore:
    token_logprobs: tuple[float, ...]   # log P(token | prompt, earlier target tokens) per target token, natural log

    @property
    def sum_logprob(self) -> float:
        """log P(target | prompt)."""
        return float(sum(self.token_logprobs))

    @property
    def mean_logprob(self) -> float:
        return self.sum_logprob / self.num_tokens

    @property
    def num_tokens(self) -> int:
        return len(self.token_logprobs)


def score_targets(handle, prompts: Sequence[Prompt], targets: Sequence[str], batch_size: int = 16,
                  chat: bool | None = None, progress: bool = True,
                  adapter_names: Sequence[str | None] | None = None) -> list[TargetScore]:
    import torch
    from tqdm.auto import tqdm

    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    target_ids = tokenize(handle.tokenizer, targets, add_special_tokens=False)
    for index, ids in enumerate(target_ids):
        if not ids:
            raise InputError(f"score: target {index} is empty, so it has no log-likelihood")
    prompt_ids = _fit_prompts(handle, encode_prompts(handle, prompts, chat, max_tokens=None), target_ids)
    row_adapters = row_adapter_names(handle, adapter_names, len(prompts))
    score_batch = _seq2seq_logprobs if handle.is_encoder_decoder else _causal_logprobs
    lengths = [len(p) + len(t) for p, t in zip(prompt_ids, target_ids)]
    results: list[TargetScore | None] = [None] * len(prompts)
    with torch.inference_mode(), evaluation_mode(handle.model), \
            tqdm(total=len(prompts), desc="score", unit="pair", disable=not progress) as bar:
        for batch in length_sorted_batches(lengths, batch_size):
            adapters = {} if row_adapters is None else {"adapter_names": [row_adapters[i] for i in batch]}
            logprobs, mask = score_batch(handle, [prompt_ids[i] for i in batch], [target_ids[i] for i in batch],
                                         adapters)
            for index, row, row_mask in zip(batch, logprobs.tolist(), mask.bool().tolist()):
                results[index] = TargetScore(tuple(value for value, real in zip(row, row_mask) if real))
            bar.update(len(batch))
    return results


def _fit_prompts(handle, prompt_ids: list[list[int]], target_ids: list[list[int]]) -> list[list[int]]:
    """Cut prompts from the left so prompt + target fits the context (encoder input alone for seq2seq)."""
    limit = context_length(handle)
    if limit is None:
        return prompt_ids
    bos = handle.tokenizer.bos_token_id
    if handle.is_encoder_decoder:
        return [truncate_left(ids, limit, bos) for ids in prompt_ids]
    fitted = []
    for ids, target in zip(prompt_ids, target_ids):
        room = limit - len(target)
        if room < 1:
            raise InputError(f"score: a {len(target)}-token target leaves no room for the prompt "
                             f"in the {limit}-token context of {handle.name}")
        fitted.append(truncate_left(ids, room, bos))
    cut = sum(len(a) != len(b) for a, b in zip(prompt_ids, fitted))
    if cut:
        log.warning("%d of %d scoring prompts did not fit the context and lost their beginning",
                    cut, len(fitted))
    return fitted


def _causal_logprobs(handle, prompts: list[list[int]], targets: list[list[int]], adapters: dict):
    """Per-position target log-probs [B, T] and their mask, T = longest target in the batch.

    Left padding puts every target at the end of its row, so only the last T+1 positions need logits
    (``logits_to_keep``), which keeps the [B, T, vocab] tensor small.
    """
    import torch

    if any(not ids for ids in prompts):
        raise InputError("score: a causal model needs a non-empty prompt to predict the first target token")
    input_ids, attention_mask = pad_batch([p + t for p, t in zip(prompts, targets)],
                                          handle.tokenizer.pad_token_id, side="left")
    # Positions count real tokens only, so a left-padded row is computed exactly like an unpadded one.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    width = max(len(t) for t in targets)
    extra = {"logits_to_keep": width + 1} if accepts(handle.model, "logits_to_keep") else {}
    logits = handle.model(input_ids=input_ids.to(handle.device), attention_mask=attention_mask.to(handle.device),
                          position_ids=position_ids.to(handle.device), **extra, **adapters).logits
    predicted = logits[:, -(width + 1):-1].float().log_softmax(-1)
    labels = input_ids[:, -width:]
    # Gather on the device: only [B, T] log-probs move to the CPU, not [B, T, vocab].
    logprobs = predicted.gather(-1, labels.to(predicted.device).unsqueeze(-1)).squeeze(-1).cpu()
    lengths = torch.tensor([len(t) for t in targets])
    mask = torch.arange(width).unsqueeze(0) >= (width - lengths).unsqueeze(1)
    return logprobs, mask.float()


def _seq2seq_logprobs(handle, prompts: list[list[int]], targets: list[list[int]], adapters: dict):
    """Per-position target log-probs [B, T] for an encoder-decoder model (targets right-padded)."""
    pad_id = handle.tokenizer.pad_token_id
    input_ids, attention_mask = pad_batch(prompts, pad_id, side="right")
    labels, label_mask = pad_batch(targets, pad_id, side="right")
    # -100 marks padding for the model's own label shifting; the decoder is causal, so right padding
    # cannot change the log-probs of real target tokens.
    logits = handle.model(input_ids=input_ids.to(handle.device), attention_mask=attention_mask.to(handle.device),
                          labels=labels.masked_fill(label_mask == 0, -100).to(handle.device), **adapters).logits
    logprobs = logits.float().log_softmax(-1).gather(-1, labels.to(logits.device).unsqueeze(-1)).squeeze(-1).cpu()
    return logprobs, label_mask.float()


def accepts(model, argument: str) -> bool:
    """Whether the underlying transformers model's forward takes `argument` (PEFT wrappers forward **kwargs)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return argument in inspect.signature(base.forward).parameters
