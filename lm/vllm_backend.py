"""Thin vLLM generation engine (GPU only; vllm is in requirements-gpu.txt and imported lazily).

Prompts arrive as token ids rendered and truncated by lm.prompting, so both backends see the same input.
Beam search and logits processors are handled by the HF backend (see ModelHandle.generate).
"""
from __future__ import annotations

import importlib.util


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


class VllmEngine:
    def __init__(self, model_location: str, dtype, trust_remote_code: bool):
        from vllm import LLM

        self.llm = LLM(model=model_location, tokenizer=model_location, dtype=dtype,
                       trust_remote_code=trust_remote_code)

    def generate(self, prompt_token_ids: list[list[int]], max_new_tokens: int, do_sample: bool,
                 temperature: float, top_p: float, top_k: int, repetition_penalty: float,
                 seed: int | None, progress: bool) -> list[str]:
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
        outputs = self.llm.generate(requests, params, use_tqdm=progress)
        return [output.outputs[0].text.strip() for output in outputs]
