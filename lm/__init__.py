"""lampkit model backend: one way to load, prompt, generate with and score language models.

    from lm import load_model, load_encoder, add_special_tokens, View, BASE, ContrastiveCombine, two_view_generate
    h = load_model("default")                      # packaged SmolLM2-135M-Instruct (converted once to the cache)
    h.generate(["Write a headline for: ..."], max_new_tokens=20)   # -> ["..."], input order kept
    h.score(["Question: 2+2?"], ["4"])             # -> [TargetScore(sum_logprob, mean_logprob, num_tokens)]
    # h.model a peft model with adapter "user_7": contrastive decoding, adapter vs base, one pass per step
    two_view_generate(View(h, "user_7"), View(h, BASE), prompts, ContrastiveCombine(alpha=0.1))
    enc = load_encoder("default")                  # packaged all-MiniLM-L6-v2, masked mean pooling
    enc.encode(["a query", "a document"], normalize=True)          # -> FloatTensor [2, 384]

Model sources: "default", a local Hugging Face folder, a ``.gguf`` file, or a hub id already in the
local HF cache. Nothing is downloaded unless ``allow_download=True`` and HF_HUB_OFFLINE=0.
Conversion CLI: ``python -m lm.convert_default`` (run by scripts/setup.sh).
Exports are resolved lazily so that ``python -m lm.<tool> --help`` does not import torch.
"""
from __future__ import annotations

import importlib
import os

# Offline by default: a hub id resolves only from the local cache unless the user opts in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Sleeping, not spinning, OpenMP workers: on a small shared CPU box, spinning threads of two torch
# processes starve each other (batch-1 decoding measured 8x slower). Read when torch is first imported,
# so import lm before torch for it to apply.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "load_model": "lm.loading",
    "ModelHandle": "lm.handle",
    "TargetScore": "lm.scoring",
    "add_special_tokens": "lm.tokens",
    "load_encoder": "lm.encoder",
    "Encoder": "lm.encoder",
    "View": "lm.decoding",
    "BASE": "lm.decoding",
    "StepState": "lm.decoding",
    "ContrastiveCombine": "lm.decoding",
    "two_view_generate": "lm.decoding",
    "two_view_generate_ids": "lm.decoding",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
