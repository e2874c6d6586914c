"""Prompts for a set of examples, then resumable batched generation and scoring.

The library half of ``lamp_rag``: ``evaluate_llm`` and ``train_llm`` run on it, and ROPG, RSPG and CoPe
import it so every method writes the same files the same way::

    prompts = build_prompts(spec, examples, items, resolve_prompt_style("auto", handle), handle.tokenizer)
    scores = generate_and_score(spec, handle, examples, prompts, "runs/x", {"max_new_tokens": 32})

``output_dir`` then holds ``predictions.json`` (the LaMP gold format ``{"task", "golds"}`` with the
canonical task name), ``scores.json`` (the ``eval.scoring`` report ``{"task", "metrics", "num_examples",
"empty_predictions", ...}``, when every example has a gold) and ``predictions.partial.jsonl``,
the per-batch generation log that a rerun with the same model, prompts and generation options reuses.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from data.errors import InputError
from data.io import atomic_write_json, atomic_write_text
from data.loaders import write_predictions
from data.prompts import default_prompt_style, render_prompt
from data.records import Example
from data.tasks import TaskSpec

log = logging.getLogger("lampkit.lamp_rag")

PREDICTIONS_FILE = "predictions.json"
SCORES_FILE = "scores.json"
PARTIAL_FILE = "predictions.partial.jsonl"
# Generation options that change speed, not the text, so a resumed run may change them freely.
_THROUGHPUT_OPTIONS = ("batch_size", "progress")

Prompt = str | list[dict]


def resolve_prompt_style(style: str, handle) -> str:
    """"auto" becomes the model's default: chat turns for decoder-only chat models, else the official string."""
    if style == "auto":
        return default_prompt_style(handle.is_encoder_decoder, handle.has_chat_template)
    return style


def official_prompt_cut(style: str, max_length: int) -> int | None:
    """Prompt tokens fed to the model: the official style cuts the finished prompt to ``max_length`` tokens
    FROM THE RIGHT, as the reference tokenizes it with ``truncation=True, max_length=max_length`` in training
    and evaluation (spec lamp.md 4.1 step 3, 6.1; the end of an over-long input is lost, the profile kept);
    None for the chat style, which keeps lm's default (left cut to the model's context only)."""
    return max_length if style == "official" else None


def prompt_cut_options(max_prompt_tokens: int | None) -> dict:
    """handle.generate() options for :func:`official_prompt_cut`'s result ({} when there is no cut)."""
    if max_prompt_tokens is None:
        return {}
    return {"max_input_tokens": max_prompt_tokens, "truncation_side": "right"}


def retrieve_items(spec: TaskSpec, examples: Sequence[Example], args) -> list[list[dict]] | None:
    """Top-K profile items per example from the shared retrieval flags; None without ``--use_profile``."""
    if not args.use_profile:
        return None
    if args.num_retrieved < 1:
        raise InputError(f"--num_retrieved must be at least 1 with --use_profile, got {args.num_retrieved}")
    from lamp_rag.retrieval import select_items

    encoder = None
    if args.retriever == "contriever" and not args.is_ranked:
        from lm import load_encoder

        encoder = load_encoder(args.retriever_model)
    return select_items(spec, examples, args.num_retrieved, args.retriever, is_ranked=args.is_ranked,
                        use_date=args.use_date, encoder=encoder, seed=args.seed)


def build_prompts(spec: TaskSpec, examples: Sequence[Example], items_per_example: Sequence[Sequence[Mapping]] | None,
                  style: str, tokenizer=None, max_length: int = 256, **render_options) -> list[Prompt]:
    """One prompt per example: its input plus its retrieved profile items (None: no profile).

    ``style`` is "official" (string, token budget ``max_length``) or "chat" (message list);
    ``render_options`` go to :func:`data.prompts.render_prompt` (``max_item_tokens``, ``system``, ``template``).
    """
    if items_per_example is None:
        items_per_example = [()] * len(examples)
    if len(items_per_example) != len(examples):
        raise ValueError(f"{len(items_per_example)} item lists for {len(examples)} examples")
    return [render_prompt(spec, example.input, items, style, tokenizer=tokenizer, max_length=max_length,
                          **render_options)
            for example, items in tqdm(zip(examples, items_per_example), total=len(examples),
                                       desc="prompts", unit="ex")]


def postprocess(spec: TaskSpec, text: str) -> str:
    """Uniform, minimal clean-up: strip; short-output tasks keep their first non-empty line."""
    text = text.strip()
    if spec.single_line:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return text


def generate_and_score(spec: TaskSpec, handle, examples: Sequence[Example], prompts: Sequence[Prompt],
                       output_dir: str | os.PathLike, generation_options: Mapping[str, Any],
                       model_id: str | None = None) -> dict[str, float]:
    """Generate an output per example in batches, save predictions and scores, return the scores.

    ``generation_options`` are :meth:`lm handle.generate` keyword arguments (``batch_size`` included).
    Finished batches are appended to ``predictions.partial.jsonl``; a rerun reuses every line whose
    model, prompt and options match (``model_id`` names the weights, default ``handle.weights_id``: location,
    file stamps and dtype; pass a checkpoint path for a fine-tuned model). ``predictions.json`` and ``scores.json`` are written
    atomically at the end. Returns ``{metric: value}``; ``{}`` (and no scores file) when some example has
    no gold.
    """
    if len(prompts) != len(examples):
        raise ValueError(f"{len(prompts)} prompts for {len(examples)} examples")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in generation_options.items() if k not in _THROUGHPUT_OPTIONS}
    batch_size = int(generation_options.get("batch_size", 16))
    run_key = _fingerprint({"model": model_id or handle.weights_id, "options": options})
    keys = {example.id: _fingerprint({"run": run_key, "prompt": prompt})
            for example, prompt in zip(examples, prompts)}

    partial_path = output_dir / PARTIAL_FILE
    outputs = _load_partial(partial_path, keys)
    pending = [i for i, example in enumerate(examples) if example.id not in outputs]
    if outputs:
        log.info("reusing %d finished predictions from %s", len(examples) - len(pending), partial_path)
    # Longest prompts first and batched together: less padding per batch, and memory trouble shows at once.
    pending.sort(key=lambda i: _prompt_chars(prompts[i]), reverse=True)

    new_tokens, seconds = 0, 0.0
    with open(partial_path, "a", encoding="utf-8") as partial, \
            tqdm(total=len(examples), initial=len(examples) - len(pending), desc=f"generate {spec.name}",
                 unit="ex") as bar:
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            started = time.perf_counter()
            texts = handle.generate([prompts[i] for i in batch], batch_size=batch_size, progress=False,
                                    **_batch_options(options, batch))
            seconds += time.perf_counter() - started
            new_tokens += sum(len(ids) for ids in handle.tokenizer(texts, add_special_tokens=False)["input_ids"])
            for i, text in zip(batch, texts):
                example_id = examples[i].id
                outputs[example_id] = text
                partial.write(json.dumps({"id": example_id, "key": keys[example_id], "output": text},
                                         ensure_ascii=False) + "\n")
            partial.flush()
            os.fsync(partial.fileno())
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{new_tokens / max(seconds, 1e-9):.1f}")
    if pending:
        log.info("generated %d tokens for %d examples in %.1f s (%.1f tokens/s)", new_tokens, len(pending),
                 seconds, new_tokens / max(seconds, 1e-9))

    predictions = {example.id: postprocess(spec, outputs[example.id]) for example in examples}
    write_predictions(output_dir / PREDICTIONS_FILE, spec.name, predictions)
    print(f"predictions: {output_dir / PREDICTIONS_FILE}")
    golds = {example.id: example.target for example in examples if example.target is not None}
    if len(golds) < len(examples):
        log.info("%d of %d examples have no gold output; not scoring", len(examples) - len(golds), len(examples))
        return {}
    from eval.scoring import score_predictions

    # An empty generation is a (bad) answer, not bad input: it is scored as empty and counted in the report.
    report = score_predictions(spec.name, golds, predictions, allow_missing=True)
    atomic_write_json(output_dir / SCORES_FILE, report)
    print(f"scores: {output_dir / SCORES_FILE}")
    return report["metrics"]


def _batch_options(options: dict, batch: list[int]) -> dict:
    """Options for one batch: a logits processor factory gets the examples' indices in ``examples``."""
    factory = options.get("logits_processor")
    if factory is None or _is_processor(factory):
        return options
    return {**options, "logits_processor": lambda indices: factory([batch[i] for i in indices])}


def _is_processor(obj) -> bool:
    from transformers import LogitsProcessor

    return isinstance(obj, (LogitsProcessor, list))     # LogitsProcessorList is a list


def _load_partial(path: Path, keys: Mapping[str, str]) -> dict[str, str]:
    """Outputs of earlier runs whose key matches; rewrites the log without stale or torn lines."""
    if not path.is_file():
        return {}
    outputs, kept, dropped = {}, [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:    # a line cut by an interruption
                dropped += 1
                continue
            if keys.get(record.get("id")) == record.get("key") and record["id"] not in outputs:
                outputs[record["id"]] = record["output"]
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        log.info("%s: dropping %d lines from another model, prompt or generation setting", path, dropped)
        atomic_write_text(path, "".join(kept))
    return outputs


def _fingerprint(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=_describe)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _describe(obj: Any) -> str:
    """JSON stand-in for objects such as logits processors: their class name."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _prompt_chars(prompt: Prompt) -> int:
    return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)
