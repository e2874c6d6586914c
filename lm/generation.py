"""Batched Hugging Face generation: length-sorted batches, left padding, results in input order.

``generate_ids`` returns the new token ids per prompt (through the first EOS); ``ModelHandle.generate``
decodes them. Logits processors are passed through to ``model.generate``; a callable that is not a
LogitsProcessor is a per-batch factory ``f(batch_indices) -> processor(s)`` receiving the ORIGINAL
indices of the prompts in that batch (with beam search each row is repeated num_beams times, in
repeat_interleave order), so a method can look up per-example state such as user vectors.
``adapter_names`` (one per prompt) travel with their prompts through the length sorting, so each row of
a batch runs with its own LoRA adapter (PEFT mixed-adapter batches, see lm.adapters).
"""
from __future__ import annotations

from typing import Any, Sequence

from lm.adapters import row_adapter_names
from lm.batching import evaluation_mode, length_sorted_batches, pad_batch
from lm.prompting import Prompt, encode_prompts, input_budget


def generate_ids(handle, prompts: Sequence[Prompt], max_new_tokens: int = 64, num_beams: int = 1,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 repetition_penalty: float = 1.0, seed: int | None = None, batch_size: int = 16,
                 chat: bool | None = None, logits_processor: Any = None, progress: bool = True,
                 max_input_tokens: int | None = None, truncation_side: str = "left",
                 adapter_names: Sequence[str | None] | None = None) -> list[list[int]]:
    """New token ids for every prompt, in input order, cut after the first EOS (padding is not returned).

    adapter_names: per prompt (None / "__base__": no adapter); default: ``handle.adapter`` for all.
    """
    import torch
    from tqdm.auto import tqdm

    model, tokenizer = handle.model, handle.tokenizer
    encoded = encode_prompts(handle, prompts, chat, input_budget(handle, max_new_tokens, max_input_tokens),
                             truncation_side)
    row_adapters = row_adapter_names(handle, adapter_names, len(prompts))
    options = _decoding_options(handle, max_new_tokens, num_beams, do_sample, temperature, top_p, top_k,
                                repetition_penalty)
    stop_ids = set(options["eos_token_id"])
    # Decoder-only models continue from the last prompt token, so padding must go on the left.
    side = "right" if handle.is_encoder_decoder else "left"
    results: list[list[int]] = [[] for _ in prompts]
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode(), evaluation_mode(model), \
            tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress) as bar:
        for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
            input_ids, attention_mask = pad_batch([encoded[i] for i in batch], tokenizer.pad_token_id, side)
            adapters = {} if row_adapters is None else {"adapter_names": [row_adapters[i] for i in batch]}
            output = model.generate(input_ids=input_ids.to(handle.device),
                                    attention_mask=attention_mask.to(handle.device),
                                    logits_processor=_batch_processors(logits_processor, batch), **adapters,
                                    **options)
            # Encoder-decoder output starts with the decoder start token; decoder-only repeats the prompt.
            new_tokens = output[:, 1:] if handle.is_encoder_decoder else output[:, input_ids.shape[1]:]
            for index, row in zip(batch, new_tokens.tolist()):
                results[index] = through_first_stop(row, stop_ids)
            bar.update(len(batch))
    return results


def decode(tokenizer, token_ids: list[list[int]]) -> list[str]:
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in token_ids]


def _decoding_options(handle, max_new_tokens, num_beams, do_sample, temperature, top_p, top_k,
                      repetition_penalty) -> dict:
    """Explicit generate() kwargs; sampling knobs only when sampling, so greedy/beam runs stay warning-free."""
    options = {
        "max_new_tokens": max_new_tokens,
        "num_beams": num_beams,
        "do_sample": do_sample,
        "repetition_penalty": repetition_penalty,
        "pad_token_id": handle.tokenizer.pad_token_id,
        "eos_token_id": stop_token_ids(handle),
    }
    if do_sample:
        options.update(temperature=temperature, top_p=top_p, top_k=top_k)
    return options


def stop_token_ids(handle) -> list[int]:
    """The ids that end a row: the model's generation config EOS id(s), else the tokenizer's EOS."""
    configured = handle.model.generation_config.eos_token_id
    return _as_list(configured if configured is not None else handle.tokenizer.eos_token_id)


def _batch_processors(logits_processor: Any, batch: list[int]):
    """The LogitsProcessorList for one batch; a factory is called with the batch's original indices."""
    from transformers import LogitsProcessor, LogitsProcessorList

    if logits_processor is None:
        return None
    chosen = logits_processor
    if not isinstance(chosen, (LogitsProcessor, list, tuple)):
        if not callable(chosen):
            raise TypeError(f"logits_processor must be a LogitsProcessor, a list or a factory, "
                            f"got {type(chosen).__name__}")
        chosen = chosen(list(batch))
    if chosen is None:
        return None
    return LogitsProcessorList([chosen] if isinstance(chosen, LogitsProcessor) else list(chosen))


def through_first_stop(token_ids: list[int], stop_ids: set[int]) -> list[int]:
    """Tokens up to and including the first EOS: anything after it is padding of a finished row."""
    for position, token in enumerate(token_ids):
        if token in stop_ids:
            return token_ids[:position + 1]
    return token_ids


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

