"""Zero-shot generation on a LaMP/LongLaMP split, with or without retrieved profile items, and its scores.

    python -m lamp_rag.evaluate_llm --task LaMP_4 --model_addr default \\
        --validation_data data/sample/LaMP_4/dev_questions.json \\
        --validation_outputs data/sample/LaMP_4/dev_outputs.json --output_dir runs/lamp_rag/LaMP_4/no_profile
    python -m lamp_rag.evaluate_llm ... --use_profile --retriever bm25 --num_retrieved 3 \\
        --output_dir runs/lamp_rag/LaMP_4/bm25_top3

Reference flags work as in LaMP's evaluate_llm: --model_addr, --generation_num_beams (= --num_beams),
--generation_max_length (= --max_new_tokens), --per_device_batch_size (= --batch_size), --cache_dir.
--prompt_style official decodes like the reference (4 beams, 128 new tokens) unless --num_beams /
--max_new_tokens say otherwise; the chat style decodes greedily up to the task's registry length.
Nothing is downloaded unless --allow_download.

Prompt style (--prompt_style auto, the default): decoder-only models with a chat template (such as the
packaged SmolLM2-135M-Instruct) get the CHAT rendering, each retrieved profile item as an earlier
user/assistant exchange before the question; encoder-decoder (FlanT5-style) models and models without a
chat template get the OFFICIAL LaMP string prompt. Why: on a small chat model the official string prompt
made profile use hurt (ROUGE-1 0.212 without profile, 0.156 with the top-3 items) while the chat
rendering went from 0.239 to 0.327.

--output_dir is a run folder (runtime.run_folder): predictions.json (LaMP gold format), scores.json (when
golds exist), config.json, run.log, prompts.jsonl (the prompts as the model read them) and
generations.jsonl; running the same command again reuses finished generations.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from data.cli import (GenerationOptions, ModelOptions, add_dataclass_arguments, add_generation_arguments,
                      add_model_arguments, add_task_argument, from_args, parse_args, run, setup_logging, writable_dir)
from data.errors import input_error
from lamp_rag.options import InputOptions, PromptOptions
from lamp_rag.retrieval import RetrievalOptions

log = logging.getLogger("lampkit.lamp_rag")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lamp_rag.evaluate_llm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = add_dataclass_arguments(parser, InputOptions, "data")
    data.add_argument("--validation_data", required=True, type=Path,
                      help="questions file (LaMP questions, merge_with_rank output or LongLaMP records)")
    data.add_argument("--validation_outputs", type=Path, default=None,
                      help="gold outputs {task, golds} when the questions file has none; without golds "
                           "only predictions are written")
    add_task_argument(data)
    parser.add_argument("--output_dir", required=True, type=writable_dir, help="folder for predictions, scores, config")
    add_dataclass_arguments(parser, PromptOptions, "prompt")
    add_model_arguments(parser, "--model_addr", hf_cache_dir=True)
    add_dataclass_arguments(parser, RetrievalOptions, "retrieval")
    add_generation_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.loaders import load_examples
    from data.tasks import get_task
    from lamp_rag.options import default_decoding
    from lamp_rag.pipeline import build_prompts, official_prompt_cut, prompt_cut_options, resolve_prompt_style
    from runtime.generation import generate_and_score
    from runtime.run_folder import write_run_config

    model, generation = from_args(ModelOptions, args), from_args(GenerationOptions, args)
    prompt, retrieval = from_args(PromptOptions, args), from_args(RetrievalOptions, args)
    spec = get_task(args.task)
    examples = load_examples(args.validation_data, args.validation_outputs, task=spec.name,
                             limit=from_args(InputOptions, args).limit)
    if not examples:
        raise input_error(args.validation_data, "no questions")
    # Before any output exists: bad profiles fail cleanly.
    items = retrieval.retrieve(spec, examples, seed=generation.seed, load_encoder=model.load_encoder)

    setup_logging(args.output_dir)
    handle = model.load(needs_hf=(generation.num_beams or 1) > 1 or prompt.prompt_style == "official")
    style = resolve_prompt_style(prompt.prompt_style, handle)
    max_new_tokens, num_beams = default_decoding(style, spec)
    decoding = generation.generate_kwargs(max_new_tokens, num_beams, spec=spec, tokenizer=handle.tokenizer)
    log.info("%s: %d questions, prompt style %s, profile %s, %d beams, %d new tokens", spec.name, len(examples),
             style, f"{retrieval.retriever} top-{retrieval.num_retrieved}" if retrieval.use_profile else "none",
             decoding["num_beams"], decoding["max_new_tokens"])
    write_run_config(args.output_dir, args, "lamp_rag", prompt_style=style, decoding=decoding)
    prompts = build_prompts(spec, examples, items, style, handle.tokenizer, prompt.max_length,
                            max_item_tokens=prompt.max_item_tokens)
    decoding.update(prompt_cut_options(official_prompt_cut(style, prompt.max_length)))
    scores = generate_and_score(spec, handle, examples, prompts, args.output_dir, decoding)
    for name, value in scores.items():
        print(f"{spec.name} {name}: {value:.4f}")
    print(f"config: {args.output_dir / 'config.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
