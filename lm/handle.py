"""ModelHandle: a loaded model with its tokenizer, and the one generate()/score() every method uses."""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Sequence

from lm.generation import decode, generate_ids
from lm.prompting import Prompt, encode_prompts, input_budget
from lm.scoring import TargetScore, score_targets

log = logging.getLogger(__name__)


class _SharedModel:
    """What every view of one loaded model shares: the weights (with their adapters) and engines."""

    def __init__(self, model, load_hf_model, vllm_engine, weights_id: str):
        self.model = model
        self.load_hf_model = load_hf_model
        self.vllm_engine = vllm_engine
        self.weights_id = weights_id
        self.fallbacks_logged: set[str] = set()    # why generate() left vLLM for HF, each said once


class ModelHandle:
    """``model``, ``tokenizer``, ``device``, ``is_encoder_decoder``, ``has_chat_template``, ``backend``.

    ``model`` may be replaced, e.g. by a PEFT model wrapping it. With the vLLM backend the HF model is
    only loaded when something needs it (scoring, logits processors, beam search). ``adapter`` is the
    named LoRA adapter that generate() and score() use when not told otherwise (None: the base model);
    ``with_adapter(name)`` gives a view of the same model with another default (see lm.adapters).
    """

    def __init__(self, name: str, tokenizer, config, device, model=None,
                 load_hf_model: Callable[[], Any] | None = None, vllm_engine=None):
        self.name = name
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        # load_model sets the weights id: location, file stamps and dtype (keys caches of outputs)
        self._shared = _SharedModel(model, load_hf_model, vllm_engine, name)
        self.adapter: str | None = None

    @property
    def model(self):
        if self._shared.model is None:
            log.warning("loading the Hugging Face model beside the vLLM engine: two copies on the device "
                        "(load with backend='hf' or needs_hf=True when you need scoring, processors or beams)")
            self._shared.model = self._shared.load_hf_model()
        return self._shared.model

    @model.setter
    def model(self, value) -> None:
        """Replace the model; a PEFT model put here by hand makes its active adapter this handle's default."""
        from lm.adapters import active_adapter

        # A replaced model (e.g. PEFT-wrapped) must also generate: the vLLM engine only knows the base weights.
        self._shared.model = value
        self.adapter = active_adapter(value)
        self._shared.vllm_engine = None
        # never reuse outputs cached for the old one
        self._shared.weights_id = f"{self._shared.weights_id}|replaced-{id(value)}"

    @property
    def vllm_engine(self):
        return self._shared.vllm_engine

    @property
    def base_weights_id(self) -> str:
        """Which base weights these are, whatever adapters sit on them."""
        return self._shared.weights_id

    @base_weights_id.setter
    def base_weights_id(self, value: str) -> None:
        self._shared.weights_id = value

    @property
    def weights_id(self) -> str:
        """The base weights, plus the default adapter and a digest of its weights when there is one."""
        if self.adapter is None:
            return self.base_weights_id
        if self.adapter in self._served_adapters():
            return f"{self.base_weights_id}|adapter={self.adapter}:{self.vllm_engine.adapter_stamp(self.adapter)}"
        from lm.adapters import adapter_digest

        return f"{self.base_weights_id}|adapter={self.adapter}:{adapter_digest(self.model, self.adapter)}"

    @weights_id.setter
    def weights_id(self, value: str) -> None:
        self.base_weights_id = value

    # ------------------------------------------------------------------ named adapters (lm.adapters)

    @property
    def adapters(self) -> list[str]:
        """Names of the LoRA adapters loaded on the model (served by vLLM, or on the Hugging Face model)."""
        from lm.adapters import adapter_list

        hf_model = self._shared.model     # not self.model: listing must not load the HF model beside vLLM
        return [*self._served_adapters(), *(adapter_list(hf_model) if hf_model is not None else [])]

    def _served_adapters(self) -> list[str]:
        """Adapters the vLLM engine serves as LoRA requests (none without an engine)."""
        return self.vllm_engine.adapters if self.vllm_engine is not None else []

    def add_adapter(self, name: str, options=None, replace: bool = False) -> None:
        """A fresh LoRA adapter (``lm.adapters.LoraOptions``; default r=8, zero init: no effect yet)."""
        from lm.adapters import add_adapter

        add_adapter(self, name, options, replace)

    def load_adapter(self, name: str, folder, replace: bool = False, trainable: bool = False) -> None:
        """A saved adapter folder as adapter ``name``: served as a vLLM LoRA request when the engine serves
        LoRA (load_model(lora=...)) and the adapter is for generation, else loaded on the HF model."""
        from lm.adapters import check_new_adapter_name, load_adapter

        engine = self.vllm_engine
        if engine is not None and engine.lora is not None and not trainable:
            check_new_adapter_name(self, name, replace)
            engine.add_adapter(name, folder)
            return
        load_adapter(self, name, folder, replace, trainable)

    def save_adapter(self, name: str, folder):
        """Adapter weights only; loads with plain ``peft.PeftModel.from_pretrained(base, folder)``."""
        from lm.adapters import save_adapter

        return save_adapter(self, name, folder)

    def delete_adapter(self, name: str) -> None:
        from lm.adapters import delete_adapter

        if name in self._served_adapters():
            self.vllm_engine.remove_adapter(name)
        else:
            delete_adapter(self, name)
        if self.adapter == name:
            self.adapter = None

    def merge_adapter(self, name: str) -> None:
        """Merge into the base weights (changes them for every view of this model)."""
        from lm.adapters import merge_adapter

        merge_adapter(self, name)
        self.adapter = None

    def activate_adapter(self, name: str) -> None:
        """Make ``name`` the default adapter of this handle's generate() and score()."""
        from lm.adapters import row_adapter_names

        if name not in self._served_adapters():
            row_adapter_names(self, [name], 1)     # raises for an unknown name
        self.adapter = name

    def disable_adapters(self) -> None:
        """generate() and score() use the base model unless given adapter_names."""
        self.adapter = None

    def copy_weights(self) -> "ModelHandle":
        """A handle with its own copy of the model (adapters included), e.g. to train every weight of it
        while this one keeps its weights; costs the weights' memory once more."""
        twin = copy.copy(self)
        twin._shared = _SharedModel(copy.deepcopy(self.model), None, None, f"{self.base_weights_id}|copy-{id(twin)}")
        return twin

    def with_adapter(self, name: str | None) -> "ModelHandle":
        """A view sharing this model and tokenizer whose default adapter is ``name`` (None: the base)."""
        view = copy.copy(self)
        if name is None:
            view.disable_adapters()
        else:
            view.activate_adapter(name)
        return view

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.config, "is_encoder_decoder", False))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def backend(self) -> str:
        return "vllm" if self.vllm_engine is not None else "hf"

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 64, num_beams: int = 1,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 repetition_penalty: float = 1.0, seed: int | None = None, batch_size: int = 16,
                 chat: bool | None = None, logits_processor: Any = None, progress: bool = True,
                 max_input_tokens: int | None = None, truncation_side: str = "left",
                 adapter_names: Sequence[str | None] | None = None, stop_at_newline: bool = False,
                 output_repetition_penalty: float = 1.0) -> list[str]:
        """Only the new text per prompt (special tokens stripped), in input order.

        prompts: strings or chat message lists. chat=None uses the chat template when the model has one.
        logits_processor: a LogitsProcessor, a list, or a per-batch factory (see lm.generation).
        seed: seeds torch's global RNG first, so sampling repeats for the same prompts and batch_size.
        top_k=0 disables top-k filtering.
        max_input_tokens: cut longer prompts to this many tokens (default: context length minus max_new_tokens),
        from the left (truncation_side="left", the default) or from the right ("right", see
        lm.prompting.encode_prompts).
        adapter_names: one adapter name per prompt (None or "__base__": the base model), mixed freely in
        one batch; default: this handle's ``adapter`` for every prompt.
        With the vLLM backend, adapters it serves (load_model(lora=...), then load_adapter) go as one
        LoRA request per prompt in one vLLM call; what it cannot do runs on Hugging Face (one log line).
        stop_at_newline: end a row once it has written a non-blank line (the vLLM backend runs to
        max_new_tokens instead: the first line, which single-line tasks keep, is the same).
        output_repetition_penalty: repetition penalty on the generated tokens only (not the prompt's);
        the vLLM backend has no such penalty and falls back to Hugging Face generation.
        """
        prompts = list(prompts)
        if self.vllm_engine is not None:
            reason = self._hf_only_reason(logits_processor=logits_processor, num_beams=num_beams,
                                          output_repetition_penalty=output_repetition_penalty,
                                          adapter_names=adapter_names, count=len(prompts))
            if reason is None:
                encoded = encode_prompts(self, prompts, chat, input_budget(self, max_new_tokens, max_input_tokens),
                                         truncation_side)
                return self.vllm_engine.generate(encoded, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                                 temperature=temperature, top_p=top_p, top_k=top_k,
                                                 repetition_penalty=repetition_penalty, seed=seed,
                                                 progress=progress,
                                                 adapter_names=self._served_rows(adapter_names, len(prompts)))
            if reason not in self._shared.fallbacks_logged:     # one line per reason, not one per batch
                self._shared.fallbacks_logged.add(reason)
                log.warning("vLLM backend: %s needs Hugging Face generation; falling back to it", reason)
        token_ids = generate_ids(self, prompts, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                 do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k,
                                 repetition_penalty=repetition_penalty, seed=seed, batch_size=batch_size,
                                 chat=chat, logits_processor=logits_processor, progress=progress,
                                 max_input_tokens=max_input_tokens, truncation_side=truncation_side,
                                 adapter_names=adapter_names, stop_at_newline=stop_at_newline,
                                 output_repetition_penalty=output_repetition_penalty)
        return decode(self.tokenizer, token_ids)

    def _hf_only_reason(self, logits_processor: Any = None, num_beams: int = 1,
                        output_repetition_penalty: float = 1.0, adapter_names: Sequence[str | None] | None = None,
                        count: int = 0) -> str | None:
        """Why generate() with these settings cannot run on the vLLM engine (None: it can)."""
        if logits_processor is not None:
            return "a logits processor"
        if num_beams > 1:
            return "beam search"
        if output_repetition_penalty != 1.0:
            return "output_repetition_penalty"
        from lm.adapters import BASE

        names = [self.adapter] * count if adapter_names is None else adapter_names
        unserved = sorted({name for name in names if name not in (None, BASE)} - set(self._served_adapters()))
        if unserved:
            return f"adapters not served as vLLM LoRA requests ({', '.join(map(repr, unserved))})"
        return None

    def _served_rows(self, adapter_names: Sequence[str | None] | None, count: int) -> list[str | None]:
        """One vLLM adapter name per prompt (None: the base model)."""
        from lm.adapters import BASE

        if adapter_names is None:
            return [self.adapter] * count
        if len(adapter_names) != count:
            raise ValueError(f"{len(adapter_names)} adapter names for {count} prompts")
        return [None if name == BASE else name for name in adapter_names]

    def score(self, prompts: Sequence[Prompt], targets: Sequence[str], batch_size: int = 16,
              chat: bool | None = None, progress: bool = True,
              adapter_names: Sequence[str | None] | None = None) -> list[TargetScore]:
        """log P(target | prompt) per pair: TargetScore(token_logprobs, sum_logprob, mean_logprob, num_tokens).

        adapter_names: as in generate(), one per pair.
        """
        return score_targets(self, list(prompts), list(targets), batch_size=batch_size, chat=chat,
                             progress=progress, adapter_names=adapter_names)

    def __repr__(self) -> str:
        kind = "encoder-decoder" if self.is_encoder_decoder else "decoder-only"
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return f"ModelHandle({self.name!r}, {kind}, device={self.device}, backend={self.backend}{adapter})"
