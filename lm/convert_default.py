"""Convert a GGUF checkpoint once into a safetensors Hugging Face folder (fast to load afterwards).

    python -m lm.convert_default                   # packaged SmolLM2 -> $LAMPKIT_CACHE/models/SmolLM2-135M-Instruct
    python -m lm.convert_default --gguf model.Q4_K_M.gguf --output_dir models/my-model
    python -m lm.convert_default --force           # redo the conversion

Dequantizing the packaged GGUF takes about 30 s on CPU; loading the converted folder takes about 1 s.
The folder is written to a temporary sibling and renamed into place, so it is either complete or absent.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

from data.cli import parse_args, run, writable_dir
from data.io import check_writable
from data.errors import input_error
from lm.packaged import default_lm_dir, packaged_gguf

log = logging.getLogger(__name__)


def ensure_default_lm() -> Path:
    """The converted default LM folder, converting the packaged GGUF on first use."""
    folder = default_lm_dir()
    if not folder.is_dir():
        log.warning("converting the packaged SmolLM2 GGUF once into %s (about 30 s)", folder)
        convert_gguf(packaged_gguf(), folder)
    return folder


def convert_gguf(gguf_path: str | Path, output_dir: str | Path, force: bool = False) -> Path:
    """Dequantize `gguf_path` and save model + tokenizer to `output_dir` atomically; returns output_dir."""
    gguf_path, output_dir = Path(gguf_path), Path(output_dir)
    if gguf_path.suffix.lower() != ".gguf" or not gguf_path.is_file():
        raise input_error(gguf_path, "not an existing .gguf file")
    if output_dir.is_dir() and not force:
        return output_dir
    import torch

    from lm.loading import load_model

    handle = load_model(gguf_path, device="cpu", dtype=torch.float32, backend="hf")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.tmp-"))
    staging.chmod(0o755)   # mkdtemp makes it private; the cache may be shared
    try:
        handle.model.save_pretrained(staging)
        handle.tokenizer.save_pretrained(staging)
        _move_into_place(staging, output_dir, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def _move_into_place(staging: Path, output_dir: Path, replace: bool) -> None:
    """Rename the finished folder into place; a concurrent conversion that finished first is kept."""
    retired = None
    if replace and output_dir.exists():
        retired = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        output_dir.rename(retired)
    try:
        staging.rename(output_dir)
    except OSError:
        if not output_dir.is_dir():
            raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lm.convert_default", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--gguf", type=Path, default=None,
                        help="GGUF file to convert (default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--output_dir", type=writable_dir, default=None,
                        help="where the HF folder goes (default: $LAMPKIT_CACHE/models/SmolLM2-135M-Instruct)")
    parser.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    gguf = args.gguf or packaged_gguf()
    output_dir = args.output_dir or default_lm_dir()
    if output_dir.is_dir() and not args.force:
        print(f"converted model already in place: {output_dir}")
        return 0
    check_writable(output_dir, "folder")   # before the minute of dequantizing, not after
    started = time.monotonic()
    convert_gguf(gguf, output_dir, force=args.force)
    print(f"converted {gguf} in {time.monotonic() - started:.0f} s -> {output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
