"""CURP inference: generation with the trained codebook and projector (``python inference.py`` runs this).

    python -m curp.inference                                   # everything under $OUT_ROOT (default runs/curp)
    python -m curp.inference --embeddings runs/curp/embeddings/eval.safetensors --codebook runs/curp/stage1 \\
        --projector runs/curp/stage2 --output_dir runs/curp/inference

his_len, the prompt settings and the model come from the projector checkpoint (--model_name overrides the
model). Greedy, batched (left padding, the user vectors in place of the `<USR_EMB>` embeddings).
LaMP/LongLaMP examples: --output_dir is a run folder (predictions.json in the LaMP gold format, scores.json
by eval/ when golds exist, prompts.jsonl, generations.jsonl, config.json, run.log); AlignX examples:
predictions.jsonl with {id, prompt, chosen, generated}. A rerun reuses finished generations.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from data.cli import (ModelOptions, add_dataclass_arguments, from_args, option, parse_args, run, setup_logging,
                      writable_dir)

log = logging.getLogger("lampkit.curp")

ALIGNX_PREDICTIONS = "predictions.jsonl"
ALIGNX_MAX_NEW_TOKENS = 100      # CURP_code's inference.py


def out_root() -> Path:
    """$OUT_ROOT, where step1.sh, step2.sh and inference read and write (default runs/curp)."""
    return Path(os.environ.get("OUT_ROOT", "runs/curp"))


@dataclass
class DecodingOptions:
    """Greedy decoding with the user vectors."""

    max_new_tokens: int | None = option(None, "default: the task's registry length; "
                                              f"{ALIGNX_MAX_NEW_TOKENS} for AlignX", minimum=1)
    batch_size: int = option(16, "prompts per generation batch", minimum=1)
    rotate_users: bool = option(False, "ablation: example r gets the user vectors of example r + 1 "
                                       "(another user's history)")


def make_parser() -> argparse.ArgumentParser:
    root = out_root()
    parser = argparse.ArgumentParser(prog="python -m curp.inference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, default=root / "embeddings" / "eval.safetensors",
                        help="embeddings file of the examples to answer (default: %(default)s)")
    parser.add_argument("--codebook", type=Path, default=root / "stage1", help="stage-1 folder (default: %(default)s)")
    parser.add_argument("--projector", type=Path, default=root / "stage2", help="stage-2 folder (default: %(default)s)")
    parser.add_argument("--output_dir", type=writable_dir, default=str(root / "inference"),
                        help="run folder for the predictions (default: %(default)s)")
    add_dataclass_arguments(parser, DecodingOptions, "decoding")
    add_dataclass_arguments(parser, ModelOptions, "model", defaults={"model_name": None}, exclude=("backend",))
    return parser


def generate_with_users(model, tokenizer, projector, prompts: Sequence[list[int]], users: torch.Tensor,
                        pad_id: int, user_id: int, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy outputs (new text only) of prompts whose `<USR_EMB>` embeddings are the projected users [R, L, D]."""
    from lm.batching import pad_batch
    from curp.stage2 import projected_embeddings

    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            input_ids, mask = pad_batch(prompts[start:start + batch_size], pad_id, "left")
            inputs = projected_embeddings(model, projector, input_ids.to(device), users[start:start + batch_size],
                                          user_id)
            # With inputs_embeds only, generate returns the new tokens alone.
            new = model.generate(inputs_embeds=inputs, attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1, pad_token_id=pad_id,
                                 suppress_tokens=[pad_id, user_id])
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from curp.projector import add_curp_tokens, prompt_ids, user_vectors
    from curp.records import ALIGNX, load_embeddings, matched_examples
    from curp.stage1 import load_codebook
    from curp.stage2 import load_projector
    from data.fingerprint import fingerprint
    from data.io import atomic_write_text
    from runtime.generation import GenerationLog, load_generations
    from runtime.run_folder import GENERATIONS_FILE, PROMPTS_FILE, write_run_config

    embeddings = load_embeddings(args.embeddings)
    examples = matched_examples(embeddings, args.embeddings)
    quantizer = load_codebook(args.codebook)
    projector, settings, state = load_projector(args.projector)
    model_options = from_args(ModelOptions, args, model_name=args.model_name or state["model_name"])
    output_dir = Path(args.output_dir)
    setup_logging(output_dir)
    write_run_config(output_dir, args, "curp", his_len=settings.his_len, model_name=model_options.model_name)
    task = embeddings.source.task
    max_new_tokens = args.max_new_tokens or (ALIGNX_MAX_NEW_TOKENS if task == ALIGNX else _spec(task).max_new_tokens)

    handle = model_options.load(backend="hf", needs_hf=True)
    pad_id, user_id = add_curp_tokens(handle.model, handle.tokenizer)
    projector.to(handle.device)
    prompts = [prompt_ids(handle.tokenizer, example.question, settings) for example in examples]
    users = torch.stack([user_vectors(quantizer, embeddings.history(row), settings.his_len)
                         for row in range(len(examples))])
    if args.rotate_users:
        users = users.roll(-1, dims=0)
    atomic_write_text(output_dir / PROMPTS_FILE, "".join(
        json.dumps({"id": e.id, "text": handle.tokenizer.decode(ids), "num_tokens": len(ids)}, ensure_ascii=False) + "\n"
        for e, ids in zip(examples, prompts)))

    # The resume key: the weights, the trained projector and codebook, the prompt, the user and the length.
    shared = fingerprint({"model": handle.weights_id, "projector": state["key"],
                          "codebook": fingerprint(quantizer.codebooks.numpy().tobytes()), "max_new_tokens": max_new_tokens})
    keys = {e.id: fingerprint({"run": shared, "prompt": ids, "user": fingerprint(users[r].numpy().tobytes())})
            for r, (e, ids) in enumerate(zip(examples, prompts))}
    log_path = output_dir / GENERATIONS_FILE
    outputs = load_generations(log_path, keys)
    pending = [r for r, e in enumerate(examples) if e.id not in outputs]
    with GenerationLog(log_path) as log_file, \
            tqdm(total=len(examples), initial=len(examples) - len(pending), desc="curp generate", unit="ex") as bar:
        for start in range(0, len(pending), args.batch_size):
            batch = pending[start:start + args.batch_size]
            texts = generate_with_users(handle.model, handle.tokenizer, projector, [prompts[r] for r in batch],
                                        users[batch], pad_id, user_id, max_new_tokens, args.batch_size)
            for r, text in zip(batch, texts):
                outputs[examples[r].id] = text
            log_file.append_batch([(examples[r].id, keys[examples[r].id], outputs[examples[r].id]) for r in batch])
            bar.update(len(batch))
    write_outputs(task, examples, outputs, output_dir)
    return 0


def _spec(task: str):
    from data.tasks import get_task

    return get_task(task)


def write_outputs(task: str, examples, outputs: dict[str, str], output_dir: Path) -> None:
    """predictions.json (+ scores.json) for a registry task, predictions.jsonl for AlignX."""
    from curp.records import ALIGNX
    from data.io import atomic_write_text
    from data.loaders import write_predictions
    from runtime.generation import postprocess
    from runtime.run_folder import PREDICTIONS_FILE, write_scores

    if task == ALIGNX:
        path = atomic_write_text(output_dir / ALIGNX_PREDICTIONS, "".join(
            json.dumps({"id": e.id, "prompt": e.question, "chosen": e.answer, "generated": outputs[e.id].strip()},
                       ensure_ascii=False) + "\n" for e in examples))
        print(f"predictions: {path}")
        return
    spec = _spec(task)
    predictions = {e.id: postprocess(spec, outputs[e.id]) for e in examples}
    print(f"predictions: {write_predictions(output_dir / PREDICTIONS_FILE, spec.name, predictions)}")
    golds = {e.id: e.answer for e in examples if e.answer is not None}
    if len(golds) == len(examples):
        scores = write_scores(output_dir, spec.name, golds, predictions)
        print(json.dumps(scores))


if __name__ == "__main__":
    raise SystemExit(run(main))
