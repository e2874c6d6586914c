"""File helpers shared by every package: atomic writes, checked JSON reads, the artifact cache root."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from data.errors import input_error


_UMASK = os.umask(0)
os.umask(_UMASK)


def cache_dir() -> Path:
    """Root of converted models and other artifacts: $LAMPKIT_CACHE, default ~/.cache/lampkit."""
    return Path(os.environ.get("LAMPKIT_CACHE") or Path.home() / ".cache" / "lampkit")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success it is flushed to disk and renamed to ``path``, on any
    error removed, so no reader (nor a crash) ever leaves a partial file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text via a temp file in the same folder and a rename, so no partial file is ever seen."""
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def check_writable(path: str | os.PathLike, kind: str) -> Path:
    """Fail early, with one line, when ``path`` cannot become an output ``kind`` ("file" or "folder"):
    a folder given where a file goes (or the reverse), a path under a regular file, or no permission.

    Checked before any expensive work so a run does not die at its last step. Probes by creating and
    removing a temp file in the nearest existing folder (permission bits alone do not tell: root ignores
    them, read-only mounts do not show in them); creates nothing else.
    """
    path = Path(path)
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    if kind == "file" and path.is_dir():
        raise input_error(path, "is a folder; expected a file path to write")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise input_error(path, "exists and is not a folder")
    existing = path if kind == "folder" and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise input_error(path, f"cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise input_error(path, f"cannot write in {existing}: {err.strerror or err}") from None
    return path


def require_file(path: Path) -> None:
    """An input file must exist and be a file: a missing path or a folder is a one-line InputError."""
    if path.is_dir():
        raise input_error(path, "is a folder, not a file")
    if not path.is_file():
        raise input_error(path, "file not found")


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; a missing or malformed file, or a folder, becomes a one-line InputError."""
    path = Path(path)
    require_file(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise input_error(path, f"malformed JSON at line {err.lineno} column {err.colno}: {err.msg}")
    except UnicodeDecodeError as err:
        raise input_error(path, f"not UTF-8 text ({err.reason})")


