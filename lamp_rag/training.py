"""Fine-tuning an LLM on (prompt, gold output) pairs (spec lamp.md 6), on lm.train's SFT.

One path for both model kinds: encoder-decoder models (FlanT5) learn ``prompt -> output``; decoder-only
models learn ``prompt + output + EOS`` with the loss on the output tokens only (``lm.train.sft_rows``).
With a validation set, every epoch generates the validation prompts with the ``lm`` backend (the code
``evaluate_llm`` uses) and scores the RAW golds with ``eval`` (not golds decoded from their tokens, as the
reference does); the best checkpoint follows the registry's ``spec.best_metric`` in the direction of
``spec.greater_is_better`` (LaMP_3 keeps the lowest MAE). Without one, nothing is generated and the last
epoch is the result. LoRA trains a named adapter (``lm.adapters``; peft's target modules for the model
type, ``q, v`` for T5, ``q_proj, v_proj`` for Llama) on the handle's base model and saves the adapter alone;
a second call with another ``adapter_name`` gets a fresh adapter beside the first, never stacked on it.
Full fine-tuning trains a copy of a given handle's model. The given handle itself never changes its
outputs. Rerunning with the same ``output_dir`` resumes from the last checkpoint, only with the same model,
hyperparameters and data (``checkpoints/run_settings.json``; more epochs are fine); other settings raise
InputError instead of reusing the old run's checkpoints.

Under ``torchrun`` / ``accelerate launch`` Trainer trains with DDP (or FSDP/DeepSpeed from the accelerate
config); around it, rank 0 alone writes run_settings.json, generates and scores the validation set (the other
ranks wait and receive its metrics, so every rank selects the same best checkpoint) and saves the result.

    result = finetune(spec, "default", train, train_prompts, val, val_prompts, "runs/ft", epochs=10, lora=True)
    result.best_checkpoint, result.metrics, result.handle.generate(...)    # result.handle uses the adapter
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
from runtime.distributed import is_main_process
from runtime.generation import generate_and_score
from runtime.run_folder import PREDICTIONS_FILE, SCORES_FILE, trainable_parameters, write_training_info

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

    def decoding(self, max_prompt_tokens: int | None) -> dict:
        """handle.generate() options of validation and test outputs (prompts cut as in training)."""
        return {"max_new_tokens": self.generation_max_length, "num_beams": self.generation_num_beams,
                "batch_size": self.per_device_batch_size, **prompt_cut_options(max_prompt_tokens)}


@dataclass
class FinetuneResult:
    best_checkpoint: str | None           # the checkpoint with the best validation metric (else the last one)
    metrics: dict[str, float]             # that checkpoint's validation scores ({} without validation)
    handle: Any                           # lm handle generating with the trained weights (a view using the
                                          # adapter for LoRA; its own model copy for full fine-tuning)
    adapter: str | None = None            # the trained adapter's name on the base model (LoRA)


def finetune(spec: TaskSpec, model_name, train_examples: Sequence[Example], train_prompts: Sequence[Prompt],
             val_examples: Sequence[Example] | None, val_prompts: Sequence[Prompt] | None,
             output_dir: str | os.PathLike, epochs: float, lora: bool = False, max_prompt_tokens: int | None = None,
             adapter_name: str = "finetune", merge_lora: bool = False, **hyperparameters) -> FinetuneResult:
    """Fine-tune ``model_name`` (a name for :func:`lm.load_model`, or an already loaded lm handle).

    ``val_examples``/``val_prompts`` None: no validation (no generation during training).
    ``max_prompt_tokens``: cut prompts to this many tokens from the right in training and validation
    generation (the official style's ``max_length``, see lamp_rag.pipeline.official_prompt_cut); None: no cut.
    ``hyperparameters`` are :class:`TrainingOptions` fields. Checkpoints go to ``<output_dir>/checkpoints``,
    each with the validation predictions.json and scores.json of its epoch; the result to
    ``<output_dir>/best_model`` (LoRA: the adapter alone, or merged into a full model with ``merge_lora``;
    either loads with ``lm.load_model`` / ``evaluate_llm --model_addr``), its validation files to
    ``<output_dir>/validation``.
    """
    from lm.train import sft_rows, sft_trainer, training_arguments
    from transformers.trainer_utils import get_last_checkpoint

    options = TrainingOptions(**hyperparameters)
    validate = val_examples is not None
    require_targets(train_examples, "training data")
    if validate:
        require_targets(val_examples, "validation data")
    output_dir = Path(output_dir)
    checkpoints = output_dir / CHECKPOINTS_DIR
    settings = {**run_settings(model_name, train_examples, train_prompts, val_examples or (), val_prompts or (),
                               lora, options),
                "max_prompt_tokens": max_prompt_tokens}
    check_resumable(checkpoints, settings)
    handle = _trainable_handle(model_name, lora, adapter_name, options)
    max_target_tokens = options.generation_max_length
    train_set = sft_rows(handle, train_prompts, [e.target for e in train_examples], max_target_tokens,
                         max_prompt_tokens)
    eval_dataset, trainer_class, selection = None, None, {}
    if validate:
        generation = options.decoding(max_prompt_tokens)
        # The Trainer requires an eval dataset with eval_strategy="epoch"; evaluation itself generates from prompts.
        eval_dataset = sft_rows(handle, val_prompts, [e.target for e in val_examples], max_target_tokens,
                                max_prompt_tokens)
        trainer_class = _generation_eval_trainer(spec, handle, val_examples, val_prompts, generation)
        selection = dict(eval_strategy="epoch", load_best_model_at_end=True, metric_for_best_model=spec.best_metric,
                         greater_is_better=spec.greater_is_better)
    args = training_arguments(handle, checkpoints, _train_options(options, epochs), save_strategy="epoch",
                              save_total_limit=options.save_total_limit, **selection)
    trainer = sft_trainer(handle, train_set, args, adapter=handle.adapter, trainer_class=trainer_class,
                          eval_dataset=eval_dataset)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last:
        log.info("resuming from %s", last)
    elif is_main_process():
        atomic_write_json(checkpoints / RUN_SETTINGS_FILE, settings)
    try:
        trainer.train(resume_from_checkpoint=last)
    finally:
        handle.model.eval()

    best = trainer.state.best_model_checkpoint if validate else get_last_checkpoint(str(checkpoints))
    saved = _save_result(handle, trainer, output_dir / BEST_MODEL_DIR, merge_lora)
    if not is_main_process():
        return FinetuneResult(best_checkpoint=best, metrics={}, handle=handle, adapter=handle.adapter)
    metrics = {}
    if validate:
        # The best epoch's validation outputs, reused from its checkpoint (generated only if missing there).
        metrics = generate_and_score(spec, handle, val_examples, val_prompts, best, generation, model_id=best)
        for name in (PREDICTIONS_FILE, SCORES_FILE):
            atomic_write_text(output_dir / VALIDATION_DIR / name, (Path(best) / name).read_text(encoding="utf-8"))
    write_training_info(output_dir, trainable_parameters(trainer.model))
    chosen_by = f" ({spec.best_metric} {metrics.get(spec.best_metric)})" if validate else " (the last one)"
    log.info("best checkpoint %s%s; %s saved to %s", best, chosen_by, "adapter" if lora and not merge_lora
             else "model", saved)
    return FinetuneResult(best_checkpoint=best, metrics=metrics, handle=handle, adapter=handle.adapter)


def _trainable_handle(model_name, lora: bool, adapter_name: str, options: TrainingOptions):
    """What gets trained: a fresh named adapter on the handle's base model (LoRA, returned as a view using it)
    or a copy of a given handle's model (full fine-tuning), so the caller's handle keeps its outputs."""
    from transformers import set_seed

    from lm.adapters import LoraOptions

    handle = _load(model_name)
    if not lora:
        return handle if isinstance(model_name, (str, os.PathLike)) else handle.copy_weights()
    set_seed(options.seed)      # the adapter's random A matrices depend on the seed alone, not on earlier users
    handle.add_adapter(adapter_name, LoraOptions(r=options.lora_r, alpha=options.lora_alpha,
                                                 dropout=options.lora_dropout,
                                                 target_modules=options.lora_target_modules), replace=True)
    return handle.with_adapter(adapter_name)


def _train_options(options: TrainingOptions, epochs: float):
    from lm.train import TrainOptions

    return TrainOptions(epochs=epochs, learning_rate=options.learning_rate, weight_decay=options.weight_decay,
                        batch_size=options.per_device_batch_size,
                        gradient_accumulation_steps=options.gradient_accumulation_steps,
                        warmup_ratio=options.warmup_ratio, lr_scheduler_type=options.lr_scheduler_type,
                        max_steps=options.max_steps, logging_steps=options.logging_steps, seed=options.seed,
                        max_target_tokens=options.generation_max_length)


def _save_result(handle, trainer, folder: Path, merge_lora: bool) -> Path:
    """The trained adapter alone (LoRA), merged into a full model only when asked, or the full model.
    Called on every rank: Trainer.save_model gathers a sharded (FSDP/ZeRO-3) model and writes on rank 0;
    an adapter is written by rank 0 alone."""
    if handle.adapter is None:
        trainer.save_model(str(folder))
        return folder
    if not is_main_process():
        return folder
    if merge_lora:
        from lm.adapters import save_merged

        return save_merged(handle, handle.adapter, folder)
    return handle.save_adapter(handle.adapter, folder)


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


def _generation_eval_trainer(spec: TaskSpec, handle, val_examples: Sequence[Example], val_prompts: Sequence[Prompt],
                             generation_options: dict):
    """A Trainer class whose evaluation generates the validation outputs and scores the raw golds with ``eval``.

    Each evaluation writes predictions.json and scores.json into the folder of the checkpoint saved right
    after it. Built here rather than at import so that importing this module (``--help``) stays fast.
    """
    from transformers import Trainer
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from runtime.distributed import processes

    class GenerationEvalTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
            checkpoint = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            dist = processes()
            scores = None
            if dist.is_main_process:
                # Training resumes after the last saved checkpoint, so this folder can only hold the leftovers
                # of an interrupted evaluation, generated by weights that no longer exist.
                shutil.rmtree(checkpoint, ignore_errors=True)
                # lm generation runs in eval mode and restores the training mode afterwards; on the
                # unwrapped model, so the waiting ranks take no part in its forward passes.
                scores = generate_and_score(spec, handle, val_examples, val_prompts, checkpoint,
                                            generation_options, model_id=str(checkpoint))
            scores = dist.broadcast(scores)      # every rank picks the same best checkpoint
            metrics = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return GenerationEvalTrainer
