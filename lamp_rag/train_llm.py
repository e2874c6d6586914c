"""Fine-tune an LLM on a LaMP/LongLaMP training split (optionally with retrieved profile items), pick the
best epoch on the validation split, and save predictions and scores for validation and test.

    # full fine-tuning of the packaged model, profile items ranked by merge_with_rank
    python -m lamp_rag.train_llm --task LaMP_4 --model_name default --use_profile --is_ranked \\
        --num_retrieved 1 --train_data runs/lamp_rag/LaMP_4/train_merged.json \\
        --validation_data runs/lamp_rag/LaMP_4/dev_merged.json --output_dir runs/lamp_rag/LaMP_4/finetune
    # LoRA, questions and outputs as separate files, a quick run
    python -m lamp_rag.train_llm --task LaMP_4 --lora --num_train_epochs 1 --limit 16 \\
        --train_data data/sample/LaMP_4/train_questions.json \\
        --train_outputs data/sample/LaMP_4/train_outputs.json \\
        --validation_data data/sample/LaMP_4/dev_questions.json \\
        --validation_outputs data/sample/LaMP_4/dev_outputs.json --output_dir runs/lamp_rag/LaMP_4/lora

Seq2seq (FlanT5-style) models learn prompt -> output; decoder-only models learn prompt + output + EOS with
the loss on the output only. With --validation_data each epoch generates the validation set and scores
its raw golds, and the best checkpoint follows the task's metric and direction (LaMP_3: lowest MAE);
without it nothing is generated during training and the last epoch is kept. Prompt style as in
evaluate_llm (auto: chat turns for decoder-only chat models, the official LaMP string for seq2seq models).

Decoding of the validation and test outputs follows the reference: --generation_num_beams 4,
--generation_max_length 128, batches of --per_device_batch_size; --cache_dir names the Hugging Face cache
a hub id is found in; nothing is downloaded unless --allow_download.

The same command runs on several processes (torchrun --nproc_per_node N -m lamp_rag.train_llm ..., or
accelerate launch --config_file configs/accelerate/<name>.yaml -m lamp_rag.train_llm ...): Trainer trains with
DDP (or FSDP/DeepSpeed) and rank 0 alone logs, generates and writes; see docs/scaling.md.

--output_dir receives checkpoints/ (rerun the same command to resume from the last one), best_model/
(the full model, or with --lora the adapter alone unless --merge_lora; either loads with evaluate_llm
--model_addr), validation/ and test/ (predictions.json, scores.json), config.json and run.log.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from data.cli import (ModelOptions, add_dataclass_arguments, add_model_arguments, add_task_argument, from_args,
                      parse_args, run, writable_dir)
from data.errors import InputError, input_error
from lamp_rag.options import FinetuneSettings, InputOptions, PromptOptions
from lamp_rag.retrieval import RetrievalOptions
from lamp_rag.training import TrainingOptions

log = logging.getLogger("lampkit.lamp_rag")
SPLITS = ("train", "validation", "test")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.train_llm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_dataclass_arguments(parser, InputOptions, "data")
    for split in SPLITS:
        data.add_argument(f"--{split}_data", type=Path, required=split == "train",
                          help=f"{split} questions (LaMP questions, merge_with_rank output or LongLaMP records)")
        data.add_argument(f"--{split}_outputs", type=Path, default=None,
                          help=f"gold outputs {{task, golds}} of --{split}_data when it has none")
    add_task_argument(data)
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="folder for checkpoints and results")
    add_dataclass_arguments(parser, PromptOptions, "prompt")
    add_model_arguments(parser, hf_cache_dir=True)
    add_dataclass_arguments(parser, RetrievalOptions, "retrieval")
    add_dataclass_arguments(parser, FinetuneSettings, "training")
    add_dataclass_arguments(parser, TrainingOptions, "training hyperparameters (the reference's defaults)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    model, prompt = from_args(ModelOptions, args), from_args(PromptOptions, args)
    retrieval, settings = from_args(RetrievalOptions, args), from_args(FinetuneSettings, args)
    hyperparameters = from_args(TrainingOptions, args)
    if model.backend == "vllm":
        raise InputError("--backend vllm cannot train; train_llm uses the hf backend")
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.pipeline import build_prompts, official_prompt_cut, resolve_prompt_style
    from runtime.distributed import processes, setup_logging
    from runtime.generation import generate_and_score
    from runtime.run_folder import write_run_config
    from lamp_rag.training import BEST_MODEL_DIR, VALIDATION_DIR, finetune, require_targets

    spec = get_task(args.task)
    limit = from_args(InputOptions, args).limit
    examples, items = {}, {}
    for split in SPLITS:
        path = getattr(args, f"{split}_data")
        if path is None:
            continue
        examples[split] = load_examples(path, getattr(args, f"{split}_outputs"), task=spec.name, limit=limit)
        if not examples[split]:
            raise input_error(path, "no questions")
        items[split] = retrieval.retrieve(spec, examples[split], seed=hyperparameters.seed,
                                          load_encoder=model.load_encoder)
    require_targets(examples["train"], args.train_data)
    if "validation" in examples:
        require_targets(examples["validation"], args.validation_data)

    setup_logging(args.output_dir)
    dist = processes(model.device)      # under torchrun / accelerate launch: the group, this rank's device
    handle = model.load(backend="hf")
    style = resolve_prompt_style(prompt.prompt_style, handle)
    if dist.is_main_process:
        write_run_config(args.output_dir, args, "lamp_rag", prompt_style=style, world_size=dist.world_size)
    prompts = {split: build_prompts(spec, examples[split], items[split], style, handle.tokenizer, prompt.max_length,
                                    max_item_tokens=prompt.max_item_tokens)
               for split in examples}
    max_prompt_tokens = official_prompt_cut(style, prompt.max_length)
    result = finetune(spec, handle, examples["train"], prompts["train"], examples.get("validation"),
                      prompts.get("validation"), args.output_dir, settings.num_train_epochs, lora=settings.lora,
                      max_prompt_tokens=max_prompt_tokens, merge_lora=settings.merge_lora, **vars(hyperparameters))
    if not dist.is_main_process:
        return 0        # rank 0 saved the result; it alone generates the test set and prints
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"best model: {args.output_dir / BEST_MODEL_DIR}")
    if result.metrics:
        print(f"validation: {args.output_dir / VALIDATION_DIR}")
    for name, value in result.metrics.items():
        print(f"{spec.name} validation {name}: {value:.4f}")
    if "test" in examples:
        scores = generate_and_score(spec, result.handle, examples["test"], prompts["test"], args.output_dir / "test",
                                    hyperparameters.decoding(max_prompt_tokens), model_id=result.best_checkpoint)
        for name, value in scores.items():
            print(f"{spec.name} test {name}: {value:.4f}")
    print(f"config: {args.output_dir / 'config.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
