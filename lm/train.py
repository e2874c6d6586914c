"""Training on an lm handle: SFT on (prompt, target) pairs and DPO on (prompt, chosen, rejected) triples.

Both train one named LoRA adapter (``adapter=``, see lm.adapters; other adapters and the base stay as
they are) or, for SFT without an adapter, every weight. Prompts are encoded exactly as ``handle.generate``
sees them (chat template, truncation). SFT puts the loss on the target tokens only and runs no
evaluation unless the caller's trainer adds one; DPO uses TRL's ``DPOTrainer`` with the base model (the
adapter disabled) as the reference, so no second copy of the weights::

    handle.add_adapter("user_1")
    train_sft(handle, prompts, targets, adapter="user_1", options=TrainOptions(epochs=2))
    train_dpo(handle, prompts, chosen, rejected, adapter="user_1", beta=0.1)
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Sequence

from data.errors import InputError
from lm.generation import stop_token_ids
from lm.prompting import Prompt, encode_prompts, input_budget, render, uses_chat

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Optimisation settings shared by SFT and DPO."""

    epochs: float = field(default=1.0, metadata={"help": "passes over the data"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=8, metadata={"help": "examples per device and step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimizer step"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "share of steps with linear warmup"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: run all epochs)"})
    logging_steps: int = field(default=10, metadata={"help": "log the training loss every N steps"})
    seed: int = field(default=0, metadata={"help": "random seed of initialisation and data order"})
    max_target_tokens: int = field(default=128, metadata={"help": "targets are cut to this many tokens"})

    def optimizer_steps(self, num_examples: int) -> int:
        """How many optimizer steps a run over ``num_examples`` takes (one process)."""
        if self.max_steps > 0:
            return self.max_steps
        batches = math.ceil(num_examples / self.batch_size)
        return math.ceil(self.epochs * max(1, batches // self.gradient_accumulation_steps))

    def warn_if_no_update(self, num_examples: int, what: str) -> None:
        """Linear warmup runs the first optimizer step at learning rate 0, so a run of one step changes nothing."""
        if self.warmup_ratio > 0 and self.optimizer_steps(num_examples) <= 1:
            log.warning("%s: %d examples at batch size %d make one optimizer step, which warmup runs at learning "
                        "rate 0: the weights will not change (use a smaller batch size or more epochs)",
                        what, num_examples, self.batch_size)


def training_arguments(handle, output_dir, options: TrainOptions, arguments_class=None, **overrides):
    """TrainingArguments (or a subclass such as TRL's DPOConfig) from ``options``; ``overrides`` set
    evaluation, saving and the like."""
    from transformers import TrainingArguments

    settings = dict(
        output_dir=str(output_dir), num_train_epochs=options.epochs, max_steps=options.max_steps,
        learning_rate=options.learning_rate, weight_decay=options.weight_decay,
        per_device_train_batch_size=options.batch_size, per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, warmup_steps=options.warmup_ratio,
        lr_scheduler_type=options.lr_scheduler_type, logging_steps=options.logging_steps, seed=options.seed,
        train_sampling_strategy="group_by_length", use_cpu=handle.device.type == "cpu", report_to="none",
        save_strategy="no", eval_strategy="no")
    return (arguments_class or TrainingArguments)(**{**settings, **overrides})


def sft_rows(handle, prompts: Sequence[Prompt], targets: Sequence[str], max_target_tokens: int,
             max_prompt_tokens: int | None = None, chat: bool | None = None) -> list[dict]:
    """Input ids and labels per (prompt, target), the prompt encoded as ``handle.generate`` sees it.

    Decoder-only: ``prompt + target + stop token`` with the prompt labelled -100 (loss on the target only);
    encoder-decoder: ``prompt -> target``. ``max_prompt_tokens`` cuts the prompt to that many tokens from the
    right, like a tokenizer called with ``truncation=True, max_length=...``; None: only the context limit.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    tokenizer = handle.tokenizer
    if max_prompt_tokens is None:
        prompt_ids = encode_prompts(handle, prompts, chat, input_budget(handle, max_target_tokens, None))
    else:
        prompt_ids = encode_prompts(handle, prompts, chat, max_prompt_tokens, truncation_side="right")
    if handle.is_encoder_decoder:
        labels = tokenizer(text_target=list(targets), max_length=max_target_tokens, truncation=True)["input_ids"]
        return [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": target}
                for ids, target in zip(prompt_ids, labels)]
    stop_id = stop_token_ids(handle)[0]
    rows = []
    for ids, target in zip(prompt_ids, tokenizer(list(targets), add_special_tokens=False)["input_ids"]):
        # End with the token generation stops at (for chat models the end-of-turn token).
        target = target[:max_target_tokens - 1] + [stop_id]
        rows.append({"input_ids": ids + target, "attention_mask": [1] * (len(ids) + len(target)),
                     "labels": [-100] * len(ids) + target})
    return rows


class RightPadCollator:
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


def sft_trainer(handle, rows: list[dict], args, adapter: str | None = None, trainer_class=None, **trainer_kwargs):
    """A Trainer of ``adapter`` (or every weight) on ``rows`` from :func:`sft_rows`.

    ``trainer_class`` (a transformers Trainer subclass) lets a caller add e.g. generation-based evaluation.
    With an adapter, checkpoints and ``save_model`` hold that adapter alone, so Trainer's resume and
    best-checkpoint loading restore it by name.
    """
    from transformers import Trainer

    model = _prepare(handle, adapter)
    cls = _adapter_saving(trainer_class or Trainer, handle, adapter)
    pad_id = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None \
        else handle.tokenizer.eos_token_id
    return cls(model=model, args=args, train_dataset=rows, data_collator=RightPadCollator(pad_id),
               processing_class=handle.tokenizer, **trainer_kwargs)


def train_sft(handle, prompts: Sequence[Prompt], targets: Sequence[str], adapter: str | None = None,
              options: TrainOptions | None = None, output_dir: str | os.PathLike | None = None,
              max_prompt_tokens: int | None = None, chat: bool | None = None) -> dict[str, Any]:
    """Supervised fine-tuning of ``adapter`` (None: all weights) on (prompt, target); returns Trainer's metrics.

    No evaluation and no checkpoints; ``output_dir`` only holds Trainer's scratch files (default: a temporary
    folder). Save the adapter afterwards with ``handle.save_adapter``.
    """
    options = options or TrainOptions()
    options.warn_if_no_update(len(prompts), "SFT")
    rows = sft_rows(handle, prompts, targets, options.max_target_tokens, max_prompt_tokens, chat)
    with _work_dir(output_dir) as folder:
        trainer = sft_trainer(handle, rows, training_arguments(handle, folder, options), adapter)
        try:
            metrics = trainer.train().metrics
        finally:
            handle.model.eval()
    return metrics


def train_dpo(handle, prompts: Sequence[Prompt], chosen: Sequence[str], rejected: Sequence[str], adapter: str,
              options: TrainOptions | None = None, beta: float = 0.1, output_dir: str | os.PathLike | None = None,
              chat: bool | None = None) -> dict[str, Any]:
    """DPO of ``adapter`` with TRL's DPOTrainer; the reference is the base model (all adapters disabled).

    The prompt is rendered as ``handle.generate`` renders it (chat template when used); TRL appends EOS to
    the completions. Returns Trainer's metrics.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    if not (len(prompts) == len(chosen) == len(rejected)):
        raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen, {len(rejected)} rejected")
    if handle.is_encoder_decoder:
        raise InputError(f"{handle.name}: DPO needs a decoder-only model (TRL's DPOTrainer has no seq2seq path)")
    options = options or TrainOptions()
    options.warn_if_no_update(len(prompts), "DPO")
    use_chat = uses_chat(handle, chat)
    data = Dataset.from_dict({"prompt": [render(handle.tokenizer, p, use_chat) for p in prompts],
                              "chosen": list(chosen), "rejected": list(rejected)})
    model = _prepare(handle, adapter)
    placeholder = "default" not in handle.adapters
    if placeholder:
        handle.model.add_adapter("default", handle.model.peft_config[adapter])
    with _work_dir(output_dir) as folder:
        # Length grouping needs input_ids, which TRL's rows name prompt_ids / chosen_ids / rejected_ids.
        config = training_arguments(handle, folder, options, DPOConfig, beta=beta, max_length=None,
                                    train_sampling_strategy="random")
        try:
            trainer = DPOTrainer(model=model, ref_model=None, args=config, train_dataset=data,
                                 processing_class=handle.tokenizer)
        finally:
            # TRL 1.16 treats a given PeftModel as "re-train the adapter named 'default'" and copies that
            # adapter into a frozen "ref" adapter as the reference (KeyError without a "default" one).
            # Without a "ref" adapter TRL scores the reference with adapters disabled, the base model,
            # which is the reference wanted here; so the copy (and a placeholder "default") goes again.
            for name in ("ref", "default") if placeholder else ("ref",):
                if name in handle.adapters:
                    handle.model.delete_adapter(name)
            handle.model.set_adapter(adapter)        # trainable again: the adapter alone
        try:
            metrics = trainer.train().metrics
        finally:
            handle.model.eval()
    return metrics


def _prepare(handle, adapter: str | None):
    """The model to train: with ``adapter``, only that adapter's weights require gradients."""
    from lm.adapters import row_adapter_names

    if adapter is None:
        if handle.adapters:
            raise InputError(f"{handle.name}: training every weight of a model carrying adapters "
                             f"({', '.join(handle.adapters)}); name the adapter to train")
        for parameter in handle.model.parameters():
            parameter.requires_grad_(True)
        return handle.model
    row_adapter_names(handle, [adapter], 1)        # raises for an unknown adapter
    handle.model.set_adapter(adapter)              # PEFT: only the active adapter is trainable
    return handle.model


def _adapter_saving(trainer_class, handle, adapter: str | None):
    """``trainer_class`` whose saves hold ``adapter`` alone (PEFT would save every adapter on the model)."""
    if adapter is None:
        return trainer_class
    from lm.adapters import save_adapter

    class AdapterTrainer(trainer_class):
        def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
            if self.args.should_save:
                save_adapter(handle, adapter, output_dir or self.args.output_dir)

    return AdapterTrainer


def _work_dir(folder):
    """``folder`` itself, or a temporary folder removed afterwards (Trainer needs an output_dir)."""
    if folder is not None:
        return contextlib.nullcontext(folder)
    return tempfile.TemporaryDirectory(prefix="lm-train-")
