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
the loss on the output only. Each epoch generates the validation set and scores its raw golds; the best
checkpoint follows the task's metric and direction (LaMP_3: lowest MAE). Prompt style as in evaluate_llm
(auto: chat turns for decoder-only chat models, the official LaMP string for seq2seq models).

--output_dir receives checkpoints/ (rerun the same command to resume from the last one), best_model/
(loadable with evaluate_llm --model_addr), validation/ and test/ (predictions.json, scores.json),
config.json and run.log.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from data.cli import (add_model_arguments, add_retrieval_arguments, add_task_argument, parse_args, run,
                      setup_logging, writable_dir)
from data.errors import InputError, input_error
from data.prompts import PROMPT_STYLES
from lamp_rag.training import TrainingOptions

log = logging.getLogger("lampkit.lamp_rag")
SPLITS = ("train", "validation", "test")
_OPTION_TYPES = {"float": float, "int": int, "str": str, "int | None": int, "list[str] | None": str}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.train_llm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    for split in SPLITS:
        data.add_argument(f"--{split}_data", type=Path, required=split != "test",
                          help=f"{split} questions (LaMP questions, merge_with_rank output or LongLaMP records)")
        data.add_argument(f"--{split}_outputs", type=Path, default=None,
                          help=f"gold outputs {{task, golds}} of --{split}_data when it has none")
    data.add_argument("--limit", type=int, default=None, help="use only the first N questions of each split")
    add_task_argument(data)
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="folder for checkpoints and results")
    parser.add_argument("--prompt_style", default="auto", choices=("auto", *PROMPT_STYLES),
                        help="auto (default): 'chat' for decoder-only chat models, 'official' (the LaMP "
                             "string prompt) for seq2seq/FlanT5-style models")
    parser.add_argument("--max_length", type=int, default=256,
                        help="official style: token budget of the prompt, which is also cut to it from the "
                             "right (default: %(default)s)")
    parser.add_argument("--max_item_tokens", type=int, default=None,
                        help="chat style: cut each profile item's input text to this many tokens")
    add_model_arguments(parser)
    add_retrieval_arguments(parser)

    training = parser.add_argument_group("training")
    training.add_argument("--num_train_epochs", type=float, default=10, help="epochs (default: %(default)s)")
    training.add_argument("--lora", action="store_true", help="train LoRA adapters instead of all weights")
    for option in dataclasses.fields(TrainingOptions):
        training.add_argument(f"--{option.name}", type=_OPTION_TYPES[option.type], default=option.default,
                              nargs="+" if option.type.startswith("list") else None,
                              help=option.metadata["help"] + ("" if option.default is None else
                                                              " (default: %(default)s)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    if args.backend == "vllm":
        raise InputError("--backend vllm cannot train; train_llm uses the hf backend")
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.pipeline import (build_prompts, official_prompt_cut, prompt_cut_options, resolve_prompt_style,
                                   retrieve_items)
    from runtime.generation import generate_and_score
    from runtime.run_folder import write_run_config
    from lamp_rag.training import BEST_MODEL_DIR, VALIDATION_DIR, finetune, require_targets

    spec = get_task(args.task)
    examples, items = {}, {}
    for split in SPLITS:
        path = getattr(args, f"{split}_data")
        if path is None:
            continue
        examples[split] = load_examples(path, getattr(args, f"{split}_outputs"), task=spec.name, limit=args.limit)
        if not examples[split]:
            raise input_error(path, "no questions")
        items[split] = retrieve_items(spec, examples[split], args)
    require_targets(examples["train"], args.train_data)
    require_targets(examples["validation"], args.validation_data)

    setup_logging(args.output_dir)
    from lm import load_model

    handle = load_model(args.model_name, device=args.device, dtype=args.dtype, backend="hf")
    style = resolve_prompt_style(args.prompt_style, handle)
    write_run_config(args.output_dir, args, "lamp_rag", prompt_style=style)
    prompts = {split: build_prompts(spec, examples[split], items[split], style, handle.tokenizer, args.max_length,
                                    max_item_tokens=args.max_item_tokens)
               for split in examples}
    options = {option.name: getattr(args, option.name) for option in dataclasses.fields(TrainingOptions)}
    max_prompt_tokens = official_prompt_cut(style, args.max_length)
    result = finetune(spec, handle, examples["train"], prompts["train"], examples["validation"],
                      prompts["validation"], args.output_dir, args.num_train_epochs, lora=args.lora,
                      max_prompt_tokens=max_prompt_tokens, **options)
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"best model: {args.output_dir / BEST_MODEL_DIR}")
    print(f"validation: {args.output_dir / VALIDATION_DIR}")
    for name, value in result.metrics.items():
        print(f"{spec.name} validation {name}: {value:.4f}")
    if "test" in examples:
        generation = {"max_new_tokens": args.generation_max_length, "num_beams": args.generation_num_beams,
                      "batch_size": args.per_device_batch_size, **prompt_cut_options(max_prompt_tokens)}
        scores = generate_and_score(spec, result.handle, examples["test"], prompts["test"], args.output_dir / "test",
                                    generation, model_id=result.best_checkpoint)
        for name, value in scores.items():
            print(f"{spec.name} test {name}: {value:.4f}")
    print(f"config: {args.output_dir / 'config.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
