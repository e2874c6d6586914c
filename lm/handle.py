"""ModelHandle: a loaded model with its tokenizer, and the one generate()/score() every method uses."""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from lm.generation import decode, generate_ids
from lm.prompting import Prompt, encode_prompts, input_budget
from lm.scoring import TargetScore, score_targets

log = logging.getLogger(__name__)


class ModelHandle:
    """``model``, ``tokenizer``, ``device``, ``is_encoder_decoder``, ``has_chat_template``, ``backend``.

    ``model`` may be replaced, e.g. by a PEFT model wrapping it. With the vLLM backend the HF model is
    only loaded when something needs it (scoring, logits processors, beam search).
    """

    def __init__(self, name: str, tokenizer, config, device, model=None,
                 load_hf_model: Callable[[], Any] | None = None, vllm_engine=None):
        self.name = name
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self._model = model
        self._load_hf_model = load_hf_model
        self.vllm_engine = vllm_engine
        self.weights_id = name   # load_model sets: location, file stamps and dtype (keys caches of outputs)

    @property
    def model(self):
        if self._model is None:
            log.warning("loading the Hugging Face model beside the vLLM engine: two copies on the device "
                        "(load with backend='hf' or needs_hf=True when you need scoring, processors or beams)")
            self._model = self._load_hf_model()
        return self._model

    @model.setter
    def model(self, value) -> None:
        # A replaced model (e.g. PEFT-wrapped) must also generate: the vLLM engine only knows the base weights.
        self._model = value
        self.vllm_engine = None
        self.weights_id = f"{self.weights_id}|replaced-{id(value)}"  # never reuse outputs cached for the old one

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
                 max_input_tokens: int | None = None, truncation_side: str = "left", stop_at_newline: bool = False,
                 output_repetition_penalty: float = 1.0) -> list[str]:
        """Only the new text per prompt (special tokens stripped), in input order.

        prompts: strings or chat message lists. chat=None uses the chat template when the model has one.
        logits_processor: a LogitsProcessor, a list, or a per-batch factory (see lm.generation).
        seed: seeds torch's global RNG first, so sampling repeats for the same prompts and batch_size.
        top_k=0 disables top-k filtering.
        max_input_tokens: cut longer prompts to this many tokens (default: context length minus max_new_tokens),
        from the left (truncation_side="left", the default) or from the right ("right", see
        lm.prompting.encode_prompts).
        stop_at_newline: end a row once it has written a non-blank line (the vLLM backend runs to
        max_new_tokens instead: the first line, which single-line tasks keep, is the same).
        output_repetition_penalty: repetition penalty on the generated tokens only (not the prompt's);
        the vLLM backend has no such penalty and falls back to Hugging Face generation.
        """
        prompts = list(prompts)
        if self.vllm_engine is not None:
            if logits_processor is None and num_beams == 1 and output_repetition_penalty == 1.0:
                encoded = encode_prompts(self, prompts, chat, input_budget(self, max_new_tokens, max_input_tokens),
                                         truncation_side)
                return self.vllm_engine.generate(encoded, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                                 temperature=temperature, top_p=top_p, top_k=top_k,
                                                 repetition_penalty=repetition_penalty, seed=seed,
                                                 progress=progress)
            log.warning("vLLM backend: %s needs Hugging Face generation; falling back to it",
                        "a logits processor" if logits_processor is not None
                        else "beam search" if num_beams != 1 else "output_repetition_penalty")
        token_ids = generate_ids(self, prompts, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                 do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k,
                                 repetition_penalty=repetition_penalty, seed=seed, batch_size=batch_size,
                                 chat=chat, logits_processor=logits_processor, progress=progress,
                                 max_input_tokens=max_input_tokens, truncation_side=truncation_side,
                                 stop_at_newline=stop_at_newline, output_repetition_penalty=output_repetition_penalty)
        return decode(self.tokenizer, token_ids)

    def score(self, prompts: Sequence[Prompt], targets: Sequence[str], batch_size: int = 16,
              chat: bool | None = None, progress: bool = True) -> list[TargetScore]:
        """log P(target | prompt) per pair: TargetScore(sum_logprob, mean_logprob, num_tokens)."""
        return score_targets(self, list(prompts), list(targets), batch_size=batch_size, chat=chat,
                             progress=progress)

    def __repr__(self) -> str:
        kind = "encoder-decoder" if self.is_encoder_decoder else "decoder-only"
        return f"ModelHandle({self.name!r}, {kind}, device={self.device}, backend={self.backend})"
