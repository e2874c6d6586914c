"""Resolve a model name to something ``from_pretrained`` can load, and turn load failures into one-line errors."""
from __future__ import annotations

import re
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from data.errors import InputError, input_error
from data.fingerprint import fingerprint

# "name" or "org/name": anything else that does not exist on disk is a mistyped path, not a hub id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    name: str                      # what the user asked for, used in messages
    location: str                  # local folder or hub id handed to from_pretrained
    gguf_file: str | None = None   # file name inside `location` for GGUF checkpoints
    is_hub_id: bool = False

    def weights_stamp(self) -> str:
        """Which weights these are, for caches of generated outputs: the location plus name, size and
        modification time of every file in it (a retrained model saved to the same folder gets a new stamp)."""
        folder = Path(self.location).expanduser()
        if not folder.is_dir():  # a hub id: the cached snapshot is immutable
            return self.location
        files = [folder / self.gguf_file] if self.gguf_file else sorted(f for f in folder.rglob("*") if f.is_file())
        stats = [(str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return f"{folder.resolve()}|{fingerprint(stats)}"

    def load_options(self, trust_remote_code: bool, allow_download: bool, cache_dir: str | None = None) -> dict:
        options = {"trust_remote_code": trust_remote_code, "local_files_only": not allow_download}
        if cache_dir is not None:    # where hub ids are looked up (and downloaded to); None: HF's default cache
            options["cache_dir"] = str(cache_dir)
        if self.gguf_file:
            options["gguf_file"] = self.gguf_file
        return options


def resolve_source(name_or_path: str | Path) -> ModelSource:
    """A local HF folder, a .gguf file, or (when nothing exists at that path) a hub id to find in the HF cache."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise input_error(path, "not a model: expected a model folder or a .gguf file")
        return ModelSource(name, str(path.parent), gguf_file=path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise input_error(path, "no config.json here, so not a Hugging Face model folder")
        return ModelSource(name, str(path))
    if _HUB_ID.match(name) and path.suffix.lower() != ".gguf":
        return ModelSource(name, name, is_hub_id=True)
    raise input_error(path, "no such model file or folder")


@contextmanager
def loading_errors(source: ModelSource, allow_download: bool) -> Iterator[None]:
    """Report a model that cannot be loaded as a one-line InputError (so CLIs exit 2 without a traceback)."""
    from safetensors import SafetensorError

    try:
        yield
    except InputError:
        raise
    # struct.error and EOFError: a truncated .gguf file ends before the header or tensor table it announces.
    except (OSError, ValueError, KeyError, ImportError, SafetensorError, struct.error, EOFError) as err:
        if source.is_hub_id and isinstance(err, OSError):
            hint = "" if allow_download else (" (downloads are off: pass --allow_download / allow_download=True, "
                                              "with HF_HUB_OFFLINE=0)")
            message = f"not a local folder, .gguf file or hub id in the local HF cache{hint}"
        else:
            detail = " ".join(str(err).split()) or type(err).__name__
            message = f"cannot load model: {_shorten(detail)}"
        raise input_error(source.name, message) from err


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
