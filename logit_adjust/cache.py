"""On-disk cache helpers: content digests, encoder identity, atomic tensor files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from data.fingerprint import fingerprint
from data.io import atomic_open, cache_dir


def default_cache_root() -> Path:
    """$LAMPKIT_CACHE/logit_adjust: token embeddings and user vectors shared by every run."""
    return cache_dir() / "logit_adjust"


def digest(parts: Iterable[str], length: int = 16) -> str:
    """The repository's fingerprint of a sequence of strings (a JSON list, so ("ab", "c") != ("a", "bc"))."""
    return fingerprint(list(parts), length)


def encoder_id(encoder) -> str:
    """Name of an encoder's weights for cache keys: folder name plus a digest of its path and config."""
    source = str(encoder.model.name_or_path)
    config = json.dumps(encoder.model.config.to_dict(), sort_keys=True, default=str)
    return f"{Path(source).name or 'encoder'}-{digest([source, config], 10)}"


def save_tensors(obj: Any, path: Path) -> Path:
    """torch.save through a temp file and a rename, so a reader never sees a partial file."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def load_tensors(path: Path) -> Any | None:
    """A cached object, or None when the file is absent or unreadable (it is then recomputed)."""
    import torch

    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
