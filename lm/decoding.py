"""Two-view decoding: a batched step-wise decoding loop with a KV cache where every step sees the
next-token logits of the same sequences under two views, and a combine function turns them into the
scores to decode from (contrastive decoding, ensembles, logit arithmetic).

    from lm import BASE, ContrastiveCombine, View, two_view_generate
    h.load_adapter("user_7", folder)       # expert = the user's adapter, amateur = the base model
    texts = two_view_generate(View(h, "user_7"), View(h, BASE), prompts, ContrastiveCombine(alpha=0.1))

Views: ``View(handle, adapter)``. Both views on ONE model (handles sharing it, e.g. made by
``h.with_adapter``), with different adapters or an adapter and BASE, run as one forward pass per step
over the batch doubled, each half with its own PEFT ``adapter_names`` (a mixed-adapter batch), so
weights are held once and memory stays near plain decoding. Views on two different models run two
forward passes per step with two KV caches; their tokenizers must share one vocabulary.

Decoder-only models only: an encoder-decoder model (T5, BART) is refused with an InputError, because its
decoder steps need encoder outputs and cross-attention caches that this loop does not manage.

combine(logits_a, logits_b, state) -> scores: float32 [rows, vocab] each; ``state`` is a StepState.
After combine come, in Hugging Face generate's order, the repetition penalty, then (when sampling)
temperature, top-k and top-p (transformers' own processors), then argmax or a draw from
softmax(scores). Rows stop at their own EOS: a finished row leaves the batch and its KV cache rows are
dropped, so it costs nothing while the others go on (Hugging Face generate keeps computing finished rows);
its output is padded. A batch ends when every row is done or after max_new_tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from data.errors import InputError
from lm.adapters import BASE, row_adapter_names
from lm.batching import evaluation_mode, length_sorted_batches, pad_batch
from lm.generation import decode, stop_token_ids, through_first_stop
from lm.prompting import Prompt, encode_prompts, input_budget
from lm.scoring import accepts


@dataclass(frozen=True)
class View:
    """One way to get next-token logits: a ModelHandle and which of its LoRA adapters runs.

    adapter: a named adapter of the handle (lm.adapters), BASE for the model without adapters, or None
    for the handle's default (``handle.adapter``, as in handle.generate; e.g. ``h.with_adapter("u1")``).
    """
    handle: Any
    adapter: str | None = None


@dataclass
class StepState:
    """What a combine function may look at besides the two views' logits (rows still decoding only)."""
    step: int                 # 0 while choosing the first new token
    sequences: Any            # LongTensor [rows, width]: left-padded prompts, then the tokens chosen so far
    prompt_indices: list[int]  # original index of each row's prompt (batches are sorted by length)


Combine = Callable[[Any, Any, StepState], Any]


@dataclass(frozen=True)
class ContrastiveCombine:
    """CoPe's contrastive score: s(v) = log(p~_E(v) + eps) - alpha * log(p_A(v) + eps).

    View a is the expert, view b the amateur. p~_E keeps the expert's plausible head
    {v : p_E(v) >= plausibility * max p_E} renormalised (sum + eps); tokens outside it are not -inf but
    about log(eps) - alpha * log p_A(v), as in the reference code.
    """
    alpha: float
    plausibility: float = 0.1
    epsilon: float = 1e-8

    def __call__(self, expert_logits, amateur_logits, state: StepState | None = None):
        import torch

        expert = torch.softmax(expert_logits.float(), dim=-1)
        amateur = torch.softmax(amateur_logits.float(), dim=-1)
        head = expert >= self.plausibility * expert.max(dim=-1, keepdim=True).values
        truncated = expert * head
        truncated = truncated / (truncated.sum(dim=-1, keepdim=True) + self.epsilon)
        return torch.log(truncated + self.epsilon) - self.alpha * torch.log(amateur + self.epsilon)


def two_view_generate(view_a: View, view_b: View, prompts: Sequence[Prompt], combine: Combine,
                      **options) -> list[str]:
    """The new text per prompt, in input order; options as in two_view_generate_ids."""
    return decode(view_a.handle.tokenizer, two_view_generate_ids(view_a, view_b, prompts, combine, **options))


def two_view_generate_ids(view_a: View, view_b: View, prompts: Sequence[Prompt], combine: Combine,
                          max_new_tokens: int = 64, do_sample: bool = False, temperature: float = 1.0,
                          top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                          seed: int | None = None, batch_size: int = 16, chat: bool | None = None,
                          use_cache: bool = True, progress: bool = True, max_input_tokens: int | None = None,
                          truncation_side: str = "left",
                          row_adapters: Sequence[str | None] | None = None) -> list[list[int]]:
    """New token ids per prompt, in input order, through the first EOS (see the module docstring).

    row_adapters: view a's adapter per prompt (None / BASE: no adapter), e.g. each user's own adapter, so
    many users decode in one batch against the same view b; both views must then share one model.

    Prompts are encoded with view a's tokenizer and chat setting, as in ModelHandle.generate.
    seed: seeds a torch.Generator used for every draw, so sampling repeats for the same prompts and
    batch_size. use_cache=False recomputes every step from the full sequences (a slow reference).
    """
    import torch
    from tqdm.auto import tqdm

    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    prompts = list(prompts)
    passes = _plan_passes(view_a, view_b, use_cache, row_adapters, len(prompts))
    handle = view_a.handle
    budgets = [input_budget(view.handle, max_new_tokens, max_input_tokens) for view in (view_a, view_b)]
    budget = min((limit for limit in budgets if limit is not None), default=None)
    encoded = encode_prompts(handle, prompts, chat, budget, truncation_side)
    loop = _DecodingLoop(passes, combine, _processors(do_sample, temperature, top_k, top_p, repetition_penalty),
                         do_sample, stop_token_ids(handle), handle.tokenizer.pad_token_id, handle.device)
    if seed is not None:
        loop.generator = torch.Generator(device=handle.device).manual_seed(seed)
    results: list[list[int]] = [[] for _ in prompts]
    with torch.inference_mode(), evaluation_mode(view_a.handle.model), evaluation_mode(view_b.handle.model), \
            tqdm(total=len(prompts), desc="two-view generate", unit="prompt", disable=not progress) as bar:
        for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
            input_ids, attention_mask = pad_batch([encoded[i] for i in batch], handle.tokenizer.pad_token_id,
                                                  "left")
            new_tokens = loop.run(input_ids.to(handle.device), attention_mask.to(handle.device), batch,
                                  max_new_tokens)
            for index, row in zip(batch, new_tokens.tolist()):
                results[index] = through_first_stop(row, set(loop.stop_ids))
            bar.update(len(batch))
    return results


class _ModelPass:
    """One forward per step of one model over the batch repeated once per adapter it serves.

    ``adapters``: per copy of the batch, one adapter name for every row, or a list with one name per prompt
    (indexed by the prompt's original index).
    """

    def __init__(self, handle, adapters: list[str | list[str]], use_cache: bool):
        self.model, self.device, self.adapters, self.use_cache = handle.model, handle.device, adapters, use_cache
        self.cache = None
        # A model without adapters runs plainly (its only adapter name can be BASE).
        every_name = [name for copy in adapters for name in ([copy] if isinstance(copy, str) else copy)]
        self.routes_adapters = row_adapter_names(handle, every_name, len(every_name)) is not None
        # Only the last position's logits are needed: the full prompt logits would be rows x width x vocab.
        self.logits_to_keep = accepts(self.model, "logits_to_keep")

    def reset(self) -> None:
        self.cache = None

    def keep_rows(self, kept, rows: int) -> None:
        """Drop finished rows from the KV cache: kept are row indices among rows, in every adapter's copy."""
        import torch

        if self.cache is not None:
            self.cache.batch_select_indices(torch.cat([kept + copy * rows for copy in range(len(self.adapters))]))

    def next_logits(self, sequences, attention_mask, prompt_indices: list[int]) -> list:
        """float32 logits [rows, vocab] for the next token, one tensor per adapter copy; ``prompt_indices``:
        the original prompt index of each row."""
        copies = len(self.adapters)
        # With a cache only the newest token is fed; the prompt goes through whole on the first step.
        fed = sequences if self.cache is None else sequences[:, -1:]
        # Left padding: a token's position counts only the real tokens before it.
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -fed.shape[1]:]
        inputs = {"input_ids": fed.repeat(copies, 1), "attention_mask": attention_mask.repeat(copies, 1),
                  "position_ids": positions.repeat(copies, 1)}
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        if self.routes_adapters:
            inputs["adapter_names"] = [name for copy in self.adapters
                                       for name in ([copy] * len(sequences) if isinstance(copy, str)
                                                    else [copy[index] for index in prompt_indices])]
        if self.logits_to_keep:
            inputs["logits_to_keep"] = 1
        output = self.model(**inputs, past_key_values=self.cache, use_cache=self.use_cache)
        if self.use_cache:
            self.cache = output.past_key_values
        return list(output.logits[:, -1, :].float().chunk(copies))


class _DecodingLoop:
    def __init__(self, passes: list[_ModelPass], combine: Combine, processors, do_sample: bool,
                 stop_ids: list[int], pad_id: int, device):
        self.passes, self.combine, self.processors, self.do_sample = passes, combine, processors, do_sample
        self.stop_ids, self.pad_id, self.device = stop_ids, pad_id, device
        self.generator = None

    def run(self, input_ids, attention_mask, prompt_indices: list[int], max_new_tokens: int):
        """New tokens [rows, max_new_tokens]; a finished row holds its EOS, then padding."""
        import torch

        for model_pass in self.passes:
            model_pass.reset()
        stop_ids = torch.tensor(self.stop_ids, device=self.device)
        new_tokens = torch.full((len(input_ids), max_new_tokens), self.pad_id, device=self.device)
        live = torch.arange(len(input_ids), device=self.device)   # batch rows still decoding
        sequences = input_ids
        for step in range(max_new_tokens):
            live_prompts = [prompt_indices[row] for row in live.tolist()]
            logits = [part.to(self.device) for model_pass in self.passes
                      for part in model_pass.next_logits(sequences, attention_mask, live_prompts)]
            state = StepState(step, sequences, live_prompts)
            scores = self.processors(sequences, self.combine(logits[0], logits[1], state))
            if self.do_sample:
                chosen = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator).squeeze(1)
            else:
                chosen = scores.argmax(dim=-1)
            new_tokens[live, step] = chosen
            going_on = ~torch.isin(chosen, stop_ids)
            if not bool(going_on.any()):
                break
            sequences = torch.cat([sequences, chosen[:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(sequences), 1))], dim=1)
            if not bool(going_on.all()):
                kept = going_on.nonzero().squeeze(1)
                live, sequences, attention_mask = live[kept], sequences[kept], attention_mask[kept]
                for model_pass in self.passes:
                    model_pass.keep_rows(kept, len(going_on))
        return new_tokens


def _plan_passes(view_a: View, view_b: View, use_cache: bool, row_adapters: Sequence[str | None] | None = None,
                 count: int = 0) -> list[_ModelPass]:
    """One doubled pass when both views share one model, else one pass per model."""
    for view in (view_a, view_b):
        if view.handle.is_encoder_decoder:
            raise InputError(f"{view.handle.name}: two-view decoding supports decoder-only models; "
                             f"encoder-decoder models are refused")
    if row_adapters is not None:
        if view_a.handle.model is not view_b.handle.model:
            raise InputError("row_adapters: per-prompt adapters need both views on one model")
        per_row = row_adapter_names(view_a.handle, row_adapters, count) or [BASE] * count
        other = _adapter_name(view_b)
        if other in per_row:
            raise InputError(f"{view_a.handle.name}: adapter {other!r} is in both views; two views of one "
                             f"model need different adapters")
        return [_ModelPass(view_a.handle, [per_row, other], use_cache)]
    names = [_adapter_name(view) for view in (view_a, view_b)]
    if view_a.handle.model is view_b.handle.model:
        if names[0] == names[1]:
            raise InputError(f"{view_a.handle.name}: both views are the same model with adapter {names[0]!r}; "
                             f"two views of one model need different adapters")
        return [_ModelPass(view_a.handle, names, use_cache)]
    if view_a.handle.tokenizer.get_vocab() != view_b.handle.tokenizer.get_vocab():
        raise InputError(f"{view_a.handle.name} and {view_b.handle.name}: two-view decoding needs one "
                         f"vocabulary, but their tokenizers differ")
    return [_ModelPass(view.handle, [name], use_cache) for view, name in zip((view_a, view_b), names)]


def _adapter_name(view: View) -> str:
    """The view's name in PEFT's adapter_names (BASE: no adapter); an unknown adapter is an InputError."""
    name = view.adapter if view.adapter is not None else view.handle.adapter
    row_adapter_names(view.handle, [name], 1)
    return BASE if name is None else name


def _processors(do_sample: bool, temperature: float, top_k: int, top_p: float, repetition_penalty: float):
    """transformers' processors in generate's order: repetition penalty, then the sampling warpers."""
    from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                              TopKLogitsWarper, TopPLogitsWarper)

    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if do_sample:
        if temperature != 1.0:
            processors.append(TemperatureLogitsWarper(temperature))
        if top_k:
            processors.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p))
    return processors
