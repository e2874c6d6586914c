"""Batched Hugging Face generation: length-sorted batches, left padding, results in input order.

``generate_ids`` returns the new token ids per prompt (through the first EOS); ``ModelHandle.generate``
decodes them. Logits processors are passed through to ``model.generate``; a callable that is not a
LogitsProcessor is a per-batch factory ``f(batch_indices) -> processor(s)`` receiving the ORIGINAL
indices of the prompts in that batch (with beam search each row is repeated num_beams times, in
repeat_interleave order), so a method can look up per-example state such as user vectors.
``adapter_names`` (one per prompt) travel with their prompts through the length sorting, so each row of
a batch runs with its own LoRA adapter (PEFT mixed-adapter batches, see lm.adapters).

Two options aimed at short answers: ``stop_at_newline`` ends a row once it has written a non-blank line
(single-line tasks keep only that line anyway, so the text kept is the same and the rest is not computed);
``output_repetition_penalty`` is transformers' repetition penalty applied to the generated tokens only, so
a looping answer is pushed off its loop while words copied from the prompt are not penalized (the plain
``repetition_penalty`` penalizes every prompt token too).
"""
from __future__ import annotations

from typing import Any, Sequence

from lm.adapters import row_adapter_names
from data.errors import InputError
from lm.batching import evaluation_mode, length_sorted_batches, pad_batch
from lm.prompting import Prompt, encode_prompts, input_budget


def generate_ids(handle, prompts: Sequence[Prompt], max_new_tokens: int = 64, num_beams: int = 1,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 repetition_penalty: float = 1.0, seed: int | None = None, batch_size: int = 16,
                 chat: bool | None = None, logits_processor: Any = None, progress: bool = True,
                 max_input_tokens: int | None = None, truncation_side: str = "left",
                 adapter_names: Sequence[str | None] | None = None, stop_at_newline: bool = False,
                 output_repetition_penalty: float = 1.0) -> list[list[int]]:
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
            # Where the new tokens start in the decoder's sequence: after the start token, or the padded prompt.
            prompt_width = 1 if handle.is_encoder_decoder else input_ids.shape[1]
            processors = _batch_processors(logits_processor, batch)
            if output_repetition_penalty != 1.0:
                processors = _with_output_repetition_penalty(processors, output_repetition_penalty, prompt_width)
            output = model.generate(input_ids=input_ids.to(handle.device),
                                    attention_mask=attention_mask.to(handle.device), logits_processor=processors,
                                    stopping_criteria=_line_end_criteria(tokenizer, prompt_width, stop_at_newline),
                                    **adapters, **options)
            # Encoder-decoder output starts with the decoder start token; decoder-only repeats the prompt.
            new_tokens = output[:, 1:] if handle.is_encoder_decoder else output[:, input_ids.shape[1]:]
            for index, row in zip(batch, new_tokens.tolist()):
                results[index] = through_first_stop(row, stop_ids)
                if stop_at_newline:     # a row stopped at its line end is padded to the batch's length
                    results[index] = _without_trailing(results[index], tokenizer.pad_token_id)
            bar.update(len(batch))
    return results


def length_budget(tokenizer, texts: Sequence[str], quantile: float) -> int:
    """``max_new_tokens`` from example answers (train golds): the ``quantile`` of their token counts.

    A small model that does not stop on its own is cut near the length real answers have, instead of
    at the task's generous registry length.
    """
    import numpy as np

    if not texts:
        raise InputError("no gold outputs to take a length budget from")
    if not 0 < quantile <= 1:
        raise InputError(f"the length quantile must be in (0, 1], got {quantile}")
    counts = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    return max(1, int(np.quantile(counts, quantile, method="higher")))


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


def _with_output_repetition_penalty(processors, penalty: float, prompt_width: int):
    """``processors`` plus transformers' repetition penalty over the tokens after ``prompt_width`` only."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    if penalty <= 0:
        raise InputError(f"output_repetition_penalty must be positive, got {penalty}")
    penalty_processor = RepetitionPenaltyLogitsProcessor(float(penalty), prompt_ignore_length=prompt_width)
    return LogitsProcessorList([*(processors or []), penalty_processor])


def _line_end_criteria(tokenizer, prompt_width: int, stop_at_newline: bool):
    from transformers import StoppingCriteriaList

    return StoppingCriteriaList([LineEnd(tokenizer, prompt_width)]) if stop_at_newline else None


class LineEnd:
    """Stopping criterion: a row is done once its new text holds a newline after some non-blank text.

    Hand-written because transformers' StopStringCriteria("\\n") would also stop at a leading newline,
    where single-line post-processing skips blank lines and keeps the first non-blank one.
    """

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer, self.prompt_width = tokenizer, prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor(["\n" in text.lstrip() for text in texts], dtype=torch.bool, device=input_ids.device)


def through_first_stop(token_ids: list[int], stop_ids: set[int]) -> list[int]:
    """Tokens up to and including the first EOS: anything after it is padding of a finished row."""
    for position, token in enumerate(token_ids):
        if token in stop_ids:
            return token_ids[:position + 1]
    return token_ids


def _without_trailing(token_ids: list[int], token: int | None) -> list[int]:
    end = len(token_ids)
    while end and token_ids[end - 1] == token:
        end -= 1
    return token_ids[:end]


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

