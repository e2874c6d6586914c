"""Resumable batched generation into a run folder, then predictions and scores.

    from runtime.generation import generate_and_score
    scores = generate_and_score(spec, handle, examples, prompts, "runs/x", {"max_new_tokens": 32})

THE resume scheme of every method: each finished batch appends ``{"id", "key", "output"}`` lines to
``generations.jsonl``; a rerun reuses the outputs whose key matches. The key holds everything that changes
the text - the weights (``handle.weights_id``, or ``model_id``), the backend, the adapter, the prompt, the decoding
options and any ``extra_key`` a method adds (e.g. its steering strength) - and nothing that only changes
speed (``batch_size``, ``progress``).
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tqdm.auto import tqdm

from data.fingerprint import fingerprint
from data.io import atomic_write_text
from data.loaders import write_predictions
from data.records import Example
from data.tasks import TaskSpec
from lm.prompting import Prompt
from runtime.run_folder import GENERATIONS_FILE, PREDICTIONS_FILE, PROMPTS_FILE, write_scores

log = logging.getLogger("lampkit.runtime")

# Generation options that change speed, not the text, so a resumed run may change them freely.
THROUGHPUT_OPTIONS = ("batch_size", "progress")


def postprocess(spec: TaskSpec, text: str) -> str:
    """Uniform, minimal clean-up: strip; short-output tasks keep their first non-empty line."""
    text = text.strip()
    if spec.single_line:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return text


def text_key(handle, options: Mapping[str, Any], model_id: str | None = None, adapter: Any = None,
             extra_key: Any = None) -> str:
    """The part of every example's resume key shared by a run: weights, adapter, decoding options, extras.

    ``model_id`` names the weights when ``handle.weights_id`` cannot (a Trainer checkpoint being trained);
    ``adapter`` identifies an active adapter (name and weights stamp); ``extra_key`` is whatever else a
    method feeds into decoding (logits processor state such as user biases and their strength).
    """
    stable = {name: value for name, value in options.items() if name not in THROUGHPUT_OPTIONS}
    # The backend too: vLLM's kernels need not produce HF's text from the same weights.
    return fingerprint({"model": model_id or handle.weights_id, "backend": handle.backend, "adapter": adapter,
                        "options": stable, "extra": extra_key})


def rendered_prompts(handle, prompts: Sequence[Prompt], options: Mapping[str, Any]) -> list[list[int]]:
    """The token ids each prompt is fed to the model as under ``options`` (chat template, cut, BOS)."""
    from lm.prompting import encode_prompts, input_budget

    # Options left out take handle.generate's defaults, read from its signature so the two never drift apart.
    defaults = inspect.signature(type(handle).generate).parameters
    value = {name: options.get(name, defaults[name].default)
             for name in ("max_new_tokens", "max_input_tokens", "chat", "truncation_side")}
    budget = input_budget(handle, value["max_new_tokens"], value["max_input_tokens"])
    return encode_prompts(handle, prompts, value["chat"], budget, value["truncation_side"])


def write_prompts(path: str | os.PathLike, handle, ids: Sequence[str], prompts: Sequence[Prompt],
                  options: Mapping[str, Any]) -> Path:
    """prompts.jsonl: per example its id, the exact text the model reads (special tokens included) and
    its length in tokens."""
    encoded = rendered_prompts(handle, prompts, options)
    lines = [json.dumps({"id": example_id, "text": handle.tokenizer.decode(token_ids, skip_special_tokens=False),
                         "num_tokens": len(token_ids)}, ensure_ascii=False) + "\n"
             for example_id, token_ids in zip(ids, encoded)]
    return atomic_write_text(path, "".join(lines))


def generate_outputs(handle, ids: Sequence[str], prompts: Sequence[Prompt], output_dir: str | os.PathLike,
                     options: Mapping[str, Any], model_id: str | None = None, adapter: Any = None,
                     extra_key: Any = None, desc: str = "generate") -> list[str]:
    """Raw generations per prompt, in input order, resumed from ``<output_dir>/generations.jsonl``.

    ``options`` are :meth:`lm handle.generate` keyword arguments (``batch_size`` included). A
    ``logits_processor`` that is a factory ``f(indices)`` receives indices into ``prompts``. Writes
    ``prompts.jsonl`` first (also for examples whose output is reused).
    """
    if len(ids) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts for {len(ids)} ids")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    generate_options = {name: value for name, value in options.items() if name != "batch_size"}
    batch_size = int(options.get("batch_size", 16))
    shared = text_key(handle, options, model_id, adapter, extra_key)
    keys = {example_id: fingerprint({"run": shared, "prompt": prompt}) for example_id, prompt in zip(ids, prompts)}
    write_prompts(output_dir / PROMPTS_FILE, handle, ids, prompts, options)

    log_path = output_dir / GENERATIONS_FILE
    outputs = load_generations(log_path, keys)
    pending = [i for i, example_id in enumerate(ids) if example_id not in outputs]
    if outputs:
        log.info("reusing %d finished generations from %s", len(ids) - len(pending), log_path)
    # Longest prompts first and batched together: less padding per batch, and memory trouble shows at once.
    pending.sort(key=lambda i: _prompt_chars(prompts[i]), reverse=True)

    new_tokens, seconds = 0, 0.0
    with GenerationLog(log_path) as generations, \
            tqdm(total=len(ids), initial=len(ids) - len(pending), desc=desc, unit="ex") as bar:
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            started = time.perf_counter()
            texts = handle.generate([prompts[i] for i in batch], batch_size=batch_size,
                                    **{**_batch_options(generate_options, batch), "progress": False})
            seconds += time.perf_counter() - started
            new_tokens += sum(len(token_ids) for token_ids in
                              handle.tokenizer(texts, add_special_tokens=False)["input_ids"])
            for i, text in zip(batch, texts):
                outputs[ids[i]] = text
            generations.append_batch([(ids[i], keys[ids[i]], outputs[ids[i]]) for i in batch])
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{new_tokens / max(seconds, 1e-9):.1f}")
    if pending:
        log.info("generated %d tokens for %d examples in %.1f s (%.1f tokens/s)", new_tokens, len(pending),
                 seconds, new_tokens / max(seconds, 1e-9))
    return [outputs[example_id] for example_id in ids]


def generate_and_score(spec: TaskSpec, handle, examples: Sequence[Example], prompts: Sequence[Prompt],
                       output_dir: str | os.PathLike, options: Mapping[str, Any], model_id: str | None = None,
                       adapter: Any = None, extra_key: Any = None) -> dict[str, float]:
    """Generate (resumably) an output per example, write predictions.json and, when every example has a
    gold, scores.json; return ``{metric: value}`` (``{}`` without golds)."""
    if len(prompts) != len(examples):
        raise ValueError(f"{len(prompts)} prompts for {len(examples)} examples")
    ids = [example.id for example in examples]
    raw = generate_outputs(handle, ids, prompts, output_dir, options, model_id, adapter, extra_key,
                           desc=f"generate {spec.name}")
    predictions = {example_id: postprocess(spec, text) for example_id, text in zip(ids, raw)}
    path = write_predictions(Path(output_dir) / PREDICTIONS_FILE, spec.name, predictions)
    print(f"predictions: {path}")
    golds = {example.id: example.target for example in examples if example.target is not None}
    if len(golds) < len(examples):
        log.info("%d of %d examples have no gold output; not scoring", len(examples) - len(golds), len(examples))
        return {}
    return write_scores(output_dir, spec.name, golds, predictions)


class GenerationLog:
    """The resume log opened for appending: each finished batch is written and synced to disk at once, so a
    killed run loses at most the batch in flight (and a torn last line, which load_generations drops)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "GenerationLog":
        self.file = open(self.path, "a", encoding="utf-8")
        return self

    def append_batch(self, records: Sequence[tuple[str, str, str]]) -> None:
        """``(id, key, output)`` per finished example."""
        self.file.write("".join(json.dumps({"id": example_id, "key": key, "output": output}, ensure_ascii=False)
                                + "\n" for example_id, key, output in records))
        self.file.flush()
        os.fsync(self.file.fileno())

    def __exit__(self, *exc_info) -> None:
        self.file.close()


def load_generations(path: Path, keys: Mapping[str, str]) -> dict[str, str]:
    """Outputs in the resume log whose key matches; rewrites the log without the lines it drops.

    A last line without its newline was torn by an interrupted write and is reported as such, apart from
    lines of another model, prompt or decoding setting.
    """
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return {}
    outputs, kept, stale, torn = {}, [], 0, 0
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                torn += 1
                continue
            record = {}     # a damaged line inside the file: nothing in it can be trusted
        if isinstance(record, dict) and record.get("id") in keys and keys[record["id"]] == record.get("key") \
                and record["id"] not in outputs and isinstance(record.get("output"), str):
            outputs[record["id"]] = record["output"]
            kept.append(line if line.endswith("\n") else line + "\n")
        else:
            stale += 1
    if torn:
        log.info("%s: the last line was torn by an interrupted run; dropping it", path)
    if stale:
        log.info("%s: dropping %d lines of another model, prompt or decoding setting", path, stale)
    if torn or stale or not lines[-1].endswith("\n"):
        atomic_write_text(path, "".join(kept))
    return outputs


def _batch_options(options: dict, batch: list[int]) -> dict:
    """Options for one batch: a logits processor factory gets the indices of the batch's prompts."""
    factory = options.get("logits_processor")
    if factory is None or _is_processor(factory):
        return options
    return {**options, "logits_processor": _batch_factory(factory, batch)}


def _batch_factory(factory: Callable, batch: list[int]) -> Callable:
    return lambda indices: factory([batch[i] for i in indices])


def _is_processor(obj) -> bool:
    from transformers import LogitsProcessor

    return isinstance(obj, (LogitsProcessor, list))     # LogitsProcessorList is a list


def _prompt_chars(prompt: Prompt) -> int:
    return len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)
