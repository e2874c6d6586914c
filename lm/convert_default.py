"""Convert a GGUF checkpoint once into a safetensors Hugging Face folder (fast to load afterwards).

    python -m lm.convert_default                   # packaged SmolLM2 -> $LAMPKIT_CACHE/models/SmolLM2-135M-Instruct
    python -m lm.convert_default --gguf model.Q4_K_M.gguf --output_dir models/my-model
    python -m lm.convert_default --force           # redo the conversion

Dequantizing the packaged GGUF takes about 30 s on CPU; loading the converted folder takes about 1 s.
The folder is written to a temporary sibling and renamed into place, so it is either complete or absent.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from data.cli import parse_args, run, writable_dir
from data.io import check_writable
from lm.loading import convert_gguf
from lm.packaged import default_lm_dir, packaged_gguf


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
