"""CURP stage 2: MLP projector from the codebook's vectors into the frozen LLM (bash step2.sh runs it).

    python -m curp.train_projector --embeddings runs/curp/embeddings/train.safetensors \\
        --codebook runs/curp/stage1 --output_dir runs/curp/stage2 --his_len 8 --num_epochs 2
    accelerate launch --num_processes 2 -m curp.train_projector ...   (or torchrun --nproc_per_node 2 -m ...)

Adds `<PAD>` and `<USR_EMB>` to the model (embeddings resized), puts his_len `<USR_EMB>` placeholders in
the prompt and replaces their input embeddings with the projected, quantized history vectors; the LLM and
the codebook stay frozen, the loss covers the answer only. Writes projector.pt (with his_len and the prompt
settings inference reuses), checkpoint.pt (resume), config.json and run.log into --output_dir.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import (ModelOptions, add_dataclass_arguments, add_model_arguments, from_args, parse_args, run,
                      writable_dir)
from data.errors import input_error


def make_parser() -> argparse.ArgumentParser:
    from curp.optim import OptimizerOptions
    from curp.stage2 import OPTIMIZER_DEFAULTS, ProjectorOptions

    parser = argparse.ArgumentParser(prog="python -m curp.train_projector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", required=True, type=Path,
                        help="embeddings file of the training examples (python -m curp.encode)")
    parser.add_argument("--codebook", required=True, type=Path, help="stage-1 folder or its codebook.pt")
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="folder for the projector")
    add_model_arguments(parser, hf_cache_dir=True)
    add_dataclass_arguments(parser, ProjectorOptions, "projector")
    add_dataclass_arguments(parser, OptimizerOptions, "optimizer", defaults=OPTIMIZER_DEFAULTS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from curp.optim import OptimizerOptions, make_accelerator
    from curp.records import load_embeddings, matched_examples
    from curp.stage1 import load_codebook
    from curp.stage2 import PROJECTOR_FILE, ProjectorOptions, train_projector
    from lm.prompting import uses_chat
    from runtime.distributed import setup_logging
    from runtime.run_folder import trainable_parameters, write_run_config, write_training_info

    options, model = from_args(ProjectorOptions, args), from_args(ModelOptions, args)
    embeddings = load_embeddings(args.embeddings)
    examples = matched_examples(embeddings, args.embeddings)
    missing = next((example.id for example in examples if example.answer is None), None)
    if missing is not None:
        raise input_error(embeddings.source.data, "training needs an answer for every example "
                                                  "(give --outputs to curp.encode)", record=missing)
    quantizer = load_codebook(args.codebook)
    if quantizer.embedding_dim != embeddings.dim:
        raise input_error(args.codebook, f"codebook width {quantizer.embedding_dim} but the embeddings are "
                                         f"{embeddings.dim}-d ({args.embeddings})")
    output_dir = Path(args.output_dir)
    setup_logging(output_dir)
    accelerator = make_accelerator(model.device)
    if accelerator.is_main_process:
        write_run_config(output_dir, args, "curp.train_projector", num_examples=len(examples))
    handle = model.load(backend="hf", needs_hf=True)
    frozen = sum(p.numel() for p in handle.model.parameters())
    projector = train_projector(handle, quantizer, embeddings, examples, options, from_args(OptimizerOptions, args),
                                output_dir, accelerator,
                                chat=uses_chat(handle, None),
                                extra={"model_name": model.model_name, "codebook": str(Path(args.codebook).resolve()),
                                       "encoder": embeddings.encoder})
    if accelerator.is_main_process:
        trained = trainable_parameters(projector)
        write_training_info(output_dir, trained)
        print(f"projector: {trained:,} trained parameters ({trained / (trained + frozen):.2%} of "
              f"{trained + frozen:,}); his_len {options.his_len}")
        print(f"projector: {output_dir / PROJECTOR_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
