"""CURP stage 1: product-quantized codebook with balanced k-means start (bash step1.sh runs it).

    python -m curp.train_codebook --embeddings runs/curp/embeddings/train.safetensors \\
        --output_dir runs/curp/stage1 --codebook_size 64 --num_epochs 10
    accelerate launch --num_processes 2 -m curp.train_codebook ...     (or torchrun --nproc_per_node 2 -m ...)

Writes into --output_dir: codebook.pt (the codebooks [M, K, D/M] and their shape), usage.json (codes
used per sub-space, usage entropy, distinct code tuples over all embeddings), usage.png (a histogram per
sub-space), checkpoint.pt (resume state), config.json, run.log. Rerunning resumes from checkpoint.pt and
ends with the same codebook as an uninterrupted run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from data.cli import add_dataclass_arguments, from_args, parse_args, run, writable_dir


def make_parser() -> argparse.ArgumentParser:
    from curp.optim import OptimizerOptions
    from curp.stage1 import CodebookOptions

    parser = argparse.ArgumentParser(prog="python -m curp.train_codebook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", required=True, type=Path, help="embeddings file from python -m curp.encode")
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="folder for the codebook and report")
    add_dataclass_arguments(parser, CodebookOptions, "codebook")
    add_dataclass_arguments(parser, OptimizerOptions, "optimizer")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from curp.optim import OptimizerOptions, make_accelerator
    from curp.records import load_embeddings
    from curp.stage1 import USAGE_FILE, CodebookOptions, check_shapes, train_codebook
    from runtime.distributed import setup_logging
    from runtime.run_folder import trainable_parameters, write_run_config, write_training_info

    options = from_args(CodebookOptions, args)
    embeddings = load_embeddings(args.embeddings)
    check_shapes(embeddings.vectors, options, args.embeddings)
    output_dir = Path(args.output_dir)
    setup_logging(output_dir)
    accelerator = make_accelerator()
    if accelerator.is_main_process:
        write_run_config(output_dir, args, "curp.train_codebook", encoder=embeddings.encoder,
                         num_embeddings=len(embeddings.vectors), dim=embeddings.dim)
    extra = {"encoder": embeddings.encoder, "embeddings": str(Path(args.embeddings).resolve())}
    quantizer = train_codebook(embeddings.vectors, options, from_args(OptimizerOptions, args), output_dir,
                               accelerator, extra=extra)
    if accelerator.is_main_process:
        write_training_info(output_dir, trainable_parameters(quantizer))
        report = json.loads((output_dir / USAGE_FILE).read_text())
        print(json.dumps({"codes_used": [s["codes_used"] for s in report["subspaces"]],
                          "normalized_entropy": [round(s["normalized_entropy"], 4) for s in report["subspaces"]],
                          "distinct_tuples": report["distinct_tuples"], "num_embeddings": report["num_embeddings"]}))
        print(f"codebook: {output_dir / 'codebook.pt'}; usage report: {output_dir / USAGE_FILE}, "
              f"{output_dir / 'usage.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
