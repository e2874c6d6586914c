"""lampkit model backend: one way to load, prompt, generate with and score language models.

    from lm import load_model, load_encoder, add_special_tokens, View, BASE, ContrastiveCombine, two_view_generate
    h = load_model("default")                      # packaged SmolLM2-135M-Instruct (converted once to the cache)
    h.generate(["Write a headline for: ..."], max_new_tokens=20)   # -> ["..."], input order kept
    h.score(["Question: 2+2?"], ["4"])             # -> [TargetScore(token_logprobs)], .sum_logprob, .mean_logprob
    h.add_adapter("user_1"); h.generate(prompts, adapter_names=["user_1", "__base__"])   # see lm.adapters
    # h.model a peft model with adapter "user_7": contrastive decoding, adapter vs base, one pass per step
    two_view_generate(View(h, "user_7"), View(h, BASE), prompts, ContrastiveCombine(alpha=0.1))
    enc = load_encoder("default")                  # packaged all-MiniLM-L6-v2, masked mean pooling
    enc.encode(["a query", "a document"], normalize=True)          # -> FloatTensor [2, 384]

Model sources: "default", a local Hugging Face folder, a ``.gguf`` file, a hub id already in the
local HF cache, or a saved LoRA adapter folder. Nothing is downloaded unless ``allow_download=True``
(entry scripts also default HF_HUB_OFFLINE to 1, see data.cli.set_process_defaults).
Named LoRA adapters, one base model, per-row adapters in a batch: lm.adapters; SFT and DPO: lm.train.
Conversion CLI: ``python -m lm.convert_default`` (run by scripts/setup.sh).
Exports are resolved lazily so that ``python -m lm.<tool> --help`` does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "load_model": "lm.loading",
    "ModelHandle": "lm.handle",
    "TargetScore": "lm.scoring",
    "LoraOptions": "lm.adapters",
    "add_special_tokens": "lm.tokens",
    "load_encoder": "lm.encoder",
    "resolve_encoder": "lm.encoder",
    "Encoder": "lm.encoder",
    "View": "lm.decoding",
    "BASE": "lm.adapters",
    "StepState": "lm.decoding",
    "ContrastiveCombine": "lm.decoding",
    "two_view_generate": "lm.decoding",
    "two_view_generate_ids": "lm.decoding",
    "LoraServing": "lm.vllm_backend",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
