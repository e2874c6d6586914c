"""Fine-tuning an LLM on (prompt, gold output) pairs with the Hugging Face Trainer (spec lamp.md 6).

One path for both model kinds: encoder-decoder models (FlanT5) learn ``prompt -> output``; decoder-only
models learn ``prompt + output + EOS`` with the loss on the output tokens only (prompt labels -100).
After every epoch the validation prompts are generated with the ``lm`` backend (the code ``evaluate_llm``
uses) and the RAW golds are scored with ``eval`` (not golds decoded from their tokens, as the reference
does); the best checkpoint follows the registry's ``spec.best_metric`` in the direction of
``spec.greater_is_better`` (LaMP_3 keeps the lowest MAE). LoRA targets peft's modules for the model type
(``q, v`` for T5, ``q_proj, v_proj`` for Llama). Rerunning with the same ``output_dir`` resumes from the
last checkpoint, only with the same model, hyperparameters and data (``checkpoints/run_settings.json``; more
epochs are fine); other settings raise InputError instead of reusing the old run's checkpoints.

    result = finetune(spec, "default", train, train_prompts, val, val_prompts, "runs/ft", epochs=10, lora=True)
    result.best_checkpoint, result.metrics, result.handle.generate(...)
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from data.errors import input_error
from data.io import atomic_write_json, atomic_write_text, read_json
from data.records import Example
from data.tasks import TaskSpec
from data.fingerprint import fingerprint
from lamp_rag.pipeline import prompt_cut_options
from lm.prompting import Prompt
from runtime.generation import generate_and_score
from runtime.run_folder import PREDICTIONS_FILE, SCORES_FILE

log = logging.getLogger("lampkit.lamp_rag")

CHECKPOINTS_DIR = "checkpoints"
RUN_SETTINGS_FILE = "run_settings.json"   # in checkpoints/: what the checkpoints were trained with
# Options that do not change the weights or the best checkpoint; epochs and max_steps may grow to extend a run.
_RESUMABLE_OPTIONS = ("max_steps", "logging_steps", "save_total_limit")
BEST_MODEL_DIR = "best_model"
VALIDATION_DIR = "validation"


@dataclass
class TrainingOptions:
    """Hyperparameters of :func:`finetune`; the defaults are the reference's (spec lamp.md 6.2)."""

    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    per_device_batch_size: int = field(default=16, metadata={"help": "training and generation batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimizer step"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps with linear warmup"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: run all epochs)"})
    generation_max_length: int = field(default=128, metadata={
        "help": "max new tokens when generating; gold outputs are cut to this many tokens for training"})
    generation_num_beams: int = field(default=4, metadata={"help": "beam width when generating validation and test outputs"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "modules to adapt (default: peft's choice for the model type, e.g. q v for T5)"})
    logging_steps: int = field(default=50, metadata={"help": "log the training loss every N steps"})
    save_total_limit: int | None = field(default=2, metadata={
        "help": "checkpoints kept (the best one is always kept)"})
    seed: int = field(default=0, metadata={"help": "random seed of initialisation and data order"})


@dataclass
class FinetuneResult:
    best_checkpoint: str | None           # the Trainer checkpoint with the best validation metric
    metrics: dict[str, float]             # that checkpoint's validation scores (metric name -> value)
    handle: Any                           # lm handle holding the best weights (LoRA merged), ready to generate


def finetune(spec: TaskSpec, model_name, train_examples: Sequence[Example], train_prompts: Sequence[Prompt],
             val_examples: Sequence[Example], val_prompts: Sequence[Prompt], output_dir: str | os.PathLike,
             epochs: float, lora: bool = False, max_prompt_tokens: int | None = None,
             **hyperparameters) -> FinetuneResult:
    """Fine-tune ``model_name`` (a name for :func:`lm.load_model`, or an already loaded lm handle).

    ``max_prompt_tokens``: cut prompts to this many tokens from the right in training and validation
    generation (the official style's ``max_length``, see lamp_rag.pipeline.official_prompt_cut); None: no cut.
    ``hyperparameters`` are :class:`TrainingOptions` fields. Checkpoints go to ``<output_dir>/checkpoints``,
    each with the validation predictions.json and scores.json of its epoch; the best model (LoRA merged
    into the base weights) to ``<output_dir>/best_model``, loadable by ``evaluate_llm --model_addr``, and
    its validation files to ``<output_dir>/validation``.
    """
    from transformers import TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    options = TrainingOptions(**hyperparameters)
    require_targets(train_examples, "training data")
    require_targets(val_examples, "validation data")
    output_dir = Path(output_dir)
    checkpoints = output_dir / CHECKPOINTS_DIR
    settings = {**run_settings(model_name, train_examples, train_prompts, val_examples, val_prompts, lora, options),
                "max_prompt_tokens": max_prompt_tokens}
    check_resumable(checkpoints, settings)
    handle = _load(model_name)
    if lora:
        handle.model = _add_lora(handle, options)
    train_set = _tokenize(handle, train_prompts, [e.target for e in train_examples], options.generation_max_length,
                          max_prompt_tokens)
    # The Trainer requires an eval dataset with eval_strategy="epoch"; evaluation itself generates from prompts.
    val_set = _tokenize(handle, val_prompts, [e.target for e in val_examples], options.generation_max_length,
                        max_prompt_tokens)

    args = TrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=epochs, max_steps=options.max_steps,
        learning_rate=options.learning_rate, weight_decay=options.weight_decay,
        per_device_train_batch_size=options.per_device_batch_size,
        per_device_eval_batch_size=options.per_device_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        warmup_steps=options.warmup_ratio, lr_scheduler_type=options.lr_scheduler_type,
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model=spec.best_metric, greater_is_better=spec.greater_is_better,
        save_total_limit=options.save_total_limit, logging_steps=options.logging_steps, seed=options.seed,
        train_sampling_strategy="group_by_length", use_cpu=handle.device.type == "cpu",
        report_to="none",
    )
    generation = {"max_new_tokens": options.generation_max_length, "num_beams": options.generation_num_beams,
                  "batch_size": options.per_device_batch_size, **prompt_cut_options(max_prompt_tokens)}
    trainer = _generation_eval_trainer(
        spec, handle, val_examples, val_prompts, generation,
        model=handle.model, args=args, train_dataset=train_set, eval_dataset=val_set,
        data_collator=_RightPadCollator(_pad_id(handle.tokenizer)), processing_class=handle.tokenizer,
    )
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last:
        log.info("resuming from %s", last)
    else:
        atomic_write_json(checkpoints / RUN_SETTINGS_FILE, settings)
    trainer.train(resume_from_checkpoint=last)

    best = trainer.state.best_model_checkpoint
    if lora:
        handle.model = trainer.model.merge_and_unload()   # plain weights: faster generation, loadable alone
    handle.model.eval()
    # The best epoch's validation outputs, reused from its checkpoint (generated only if missing there).
    metrics = generate_and_score(spec, handle, val_examples, val_prompts, best, generation, model_id=best)
    for name in (PREDICTIONS_FILE, SCORES_FILE):
        atomic_write_text(output_dir / VALIDATION_DIR / name, (Path(best) / name).read_text(encoding="utf-8"))
    trainer.model = handle.model
    trainer.save_model(str(output_dir / BEST_MODEL_DIR))
    log.info("best checkpoint %s (%s %s); model saved to %s", best, spec.best_metric,
             metrics.get(spec.best_metric), output_dir / BEST_MODEL_DIR)
    return FinetuneResult(best_checkpoint=best, metrics=metrics, handle=handle)


def run_settings(model_name, train_examples: Sequence[Example], train_prompts: Sequence[Prompt],
                 val_examples: Sequence[Example], val_prompts: Sequence[Prompt], lora: bool,
                 options: TrainingOptions) -> dict[str, Any]:
    """What determines a run's checkpoints: model, hyperparameters and digests of the training and validation data.

    The number of epochs (and max_steps) is left out so a finished run can be extended.
    """
    values = {name: value for name, value in vars(options).items()
              if name not in _RESUMABLE_OPTIONS and (lora or not name.startswith("lora_"))}
    settings = {"model": str(model_name) if isinstance(model_name, (str, os.PathLike)) else model_name.name,
                "lora": lora, **values,
                "training data": _data_digest(train_examples, train_prompts),
                "validation data": _data_digest(val_examples, val_prompts)}
    return json.loads(json.dumps(settings))     # as read back from the file (tuples become lists)


def check_resumable(checkpoints: Path, settings: dict[str, Any]) -> None:
    """Raise InputError if ``checkpoints`` holds checkpoints of a run with other settings (or unknown ones)."""
    from transformers.trainer_utils import get_last_checkpoint

    if not checkpoints.is_dir() or not get_last_checkpoint(str(checkpoints)):
        return
    advice = "choose another --output_dir or delete the folder"
    path = checkpoints / RUN_SETTINGS_FILE
    if not path.is_file():
        raise input_error(checkpoints, f"holds checkpoints without {RUN_SETTINGS_FILE} (settings unknown); {advice}")
    saved = read_json(path)
    for name in {**saved, **settings}:
        if saved.get(name) != settings.get(name):
            detail = ("differs (other examples, prompts, outputs or --limit)" if name.endswith(" data")
                      else f"was {saved.get(name)!r}, now {settings.get(name)!r}")
            raise input_error(checkpoints, f"holds checkpoints of another run: {name} {detail}; {advice}")


def _data_digest(examples: Sequence[Example], prompts: Sequence[Prompt]) -> str:
    return fingerprint([[str(e.id), prompt, e.target] for e, prompt in zip(examples, prompts, strict=True)])


def lora_target_modules(model) -> list[str]:
    """peft's LoRA targets for the model's type: attention query and value projections."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

    model_type = model.config.model_type
    if model_type not in TARGETS:
        raise input_error(None, f"no default LoRA target modules for model type {model_type!r}; "
                                f"give --lora_target_modules")
    return list(TARGETS[model_type])


def _add_lora(handle, options: TrainingOptions):
    from peft import LoraConfig, TaskType, get_peft_model

    targets = options.lora_target_modules or lora_target_modules(handle.model)
    log.info("LoRA r=%d alpha=%d on %s", options.lora_r, options.lora_alpha, ", ".join(targets))
    config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                        target_modules=targets,
                        task_type=TaskType.SEQ_2_SEQ_LM if handle.is_encoder_decoder else TaskType.CAUSAL_LM)
    model = get_peft_model(handle.model, config)
    model.print_trainable_parameters()
    return model


def _load(model_name):
    if not isinstance(model_name, (str, os.PathLike)):
        return model_name       # an lm handle the caller already loaded (to build prompts with its tokenizer)
    from lm import load_model

    return load_model(str(model_name), backend="hf")


def require_targets(examples: Sequence[Example], source: str | os.PathLike) -> None:
    """Training and model selection need a gold output for every example."""
    if not examples:
        raise input_error(source, "no examples")
    for example in examples:
        if example.target is None:
            raise input_error(source, "missing (give the outputs file)", record=example.id, field="output")


def _tokenize(handle, prompts: Sequence[Prompt], targets: Sequence[str], max_target_tokens: int,
              max_prompt_tokens: int | None = None) -> list[dict]:
    """Input ids and labels per (prompt, target); the prompt is encoded exactly as ``lm`` generation sees it.

    ``max_prompt_tokens`` (official style): the prompt is cut to that many tokens from the right before
    the target is appended, like the reference's ``truncation=True, max_length=max_length``.
    """
    from lm.prompting import encode_prompts, input_budget

    tokenizer = handle.tokenizer
    if max_prompt_tokens is None:
        prompt_ids = encode_prompts(handle, prompts, None, input_budget(handle, max_target_tokens, None))
    else:
        prompt_ids = encode_prompts(handle, prompts, None, max_prompt_tokens, truncation_side="right")
    if handle.is_encoder_decoder:
        labels = tokenizer(text_target=list(targets), max_length=max_target_tokens, truncation=True)["input_ids"]
        return [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": target}
                for ids, target in zip(prompt_ids, labels)]
    stop_id = _stop_token_id(handle)
    rows = []
    for ids, target in zip(prompt_ids, tokenizer(list(targets), add_special_tokens=False)["input_ids"]):
        # End with the token generation stops at (for chat models the end-of-turn token).
        target = target[:max_target_tokens - 1] + [stop_id]
        rows.append({"input_ids": ids + target, "attention_mask": [1] * (len(ids) + len(target)),
                     "labels": [-100] * len(ids) + target})
    return rows


def _stop_token_id(handle) -> int:
    eos = handle.model.generation_config.eos_token_id
    if eos is None:
        return handle.tokenizer.eos_token_id
    return eos[0] if isinstance(eos, (list, tuple)) else eos


class _RightPadCollator:
    """Pads a batch on the right (inputs with the pad id, labels with -100), whatever the tokenizer's side."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        def pad(key: str, value: int):
            width = max(len(f[key]) for f in features)
            return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

        return {"input_ids": pad("input_ids", self.pad_id), "attention_mask": pad("attention_mask", 0),
                "labels": pad("labels", -100)}


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _generation_eval_trainer(spec: TaskSpec, handle, val_examples: Sequence[Example], val_prompts: Sequence[Prompt],
                             generation_options: dict, **trainer_kwargs):
    """A Trainer whose evaluation generates the validation outputs and scores the raw golds with ``eval``.

    Each evaluation writes predictions.json and scores.json into the folder of the checkpoint saved right
    after it. Built here rather than at import so that importing this module (``--help``) stays fast.
    """
    from transformers import Trainer
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class GenerationEvalTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
            checkpoint = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            # Training resumes after the last saved checkpoint, so this folder can only hold the leftovers
            # of an interrupted evaluation, generated by weights that no longer exist.
            shutil.rmtree(checkpoint, ignore_errors=True)
            was_training = self.model.training
            self.model.eval()
            try:
                scores = generate_and_score(spec, handle, val_examples, val_prompts, checkpoint,
                                            generation_options, model_id=str(checkpoint))
            finally:
                self.model.train(was_training)
            metrics = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return GenerationEvalTrainer(**trainer_kwargs)
