"""The one content fingerprint of the repository: a short sha256 that keys caches and resumable outputs."""
from __future__ import annotations

import hashlib
import json
from os import PathLike
from pathlib import Path, PurePath
from typing import Any, Iterable


def fingerprint(value: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the sha256 of ``value``.

    Bytes are hashed as they are (e.g. ``tensor.numpy().tobytes()``); anything else as canonical JSON
    (sorted keys, so dict order does not matter; tuples hash like lists). Objects JSON cannot hold, such
    as logits processors, count by their class name: give their state explicitly when it changes outputs.
    """
    data = value if isinstance(value, bytes) else json.dumps(
        value, sort_keys=True, ensure_ascii=False, default=_describe).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:length]


def fingerprint_parts(parts: Iterable[bytes], length: int = 16) -> str:
    """:func:`fingerprint` of byte strings fed one at a time (large files or tensors, never all in memory)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:length]


def folder_fingerprint(folder: str | PathLike) -> str:
    """A digest of every file in ``folder`` (relative names and bytes), e.g. of a saved adapter's weights."""
    folder = Path(folder)
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    return fingerprint_parts(part for path in files
                             for part in (path.relative_to(folder).as_posix().encode(), path.read_bytes()))


def _describe(obj: Any) -> str:
    if isinstance(obj, PurePath):
        return str(obj)
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
