"""What the cope entry scripts share: reading their flags into the data, model and training settings, and
per-user inference with a stage's adapters into a variant's run folder."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from cope.data import User, read_users
from cope.options import DataOptions, DecodingSettings, TrainingSettings, parsed
from cope.pipeline import finished_run_key, load_decoding_model, predict_users, stage_root
from data.cli import from_args
from runtime.distributed import is_main_process, setup_logging
from runtime.run_folder import write_run_config
from runtime.users import shard_from_args

METHOD = "cope"
DEFAULT_LEARNING_RATE = 1e-4


def training_options(args: argparse.Namespace, spec, learning_rate: float = DEFAULT_LEARNING_RATE):
    """lm.train options from the training flags and the reference's fixed settings (wd 0.01, warmup 0.1)."""
    from lm.train import TrainOptions

    settings = from_args(TrainingSettings, args)
    return TrainOptions(epochs=settings.max_epoch, learning_rate=settings.learning_rate or learning_rate,
                        batch_size=settings.batch_size, weight_decay=0.01, warmup_ratio=0.1, seed=settings.seed,
                        max_target_tokens=max(128, spec.max_new_tokens))


def target_users(data: DataOptions) -> tuple[Any, list[User]]:
    return read_users(data.data_path, data.task_name, max_history=data.max_history, num_users=data.num_users,
                      max_words=data.max_words)


def open_run(args: argparse.Namespace, folder: Path, **extra) -> None:
    """Logging into ``folder``/run.log and its config.json (arguments, commit, method), by rank 0 alone."""
    setup_logging(folder)
    if is_main_process():
        write_run_config(folder, args, METHOD, **extra)


def infer(args: argparse.Namespace, stage: str, variant: str) -> dict[str, float]:
    """Inference with every target user's ``stage`` adapter; the run folder is ``<root>/<variant>[+CD]``."""
    data, model = parsed(args)
    decoding = from_args(DecodingSettings, args)
    spec, users = target_users(data)
    adapters = stage_root(data.root(), stage)
    adapters_key = finished_run_key(adapters, users, f"inference with the {stage} adapters")
    run_dir = data.root() / (decoding.run_name or variant + ("+CD" if decoding.is_cd else ""))
    open_run(args, run_dir)
    handle, tam_stamp = load_decoding_model(model, data.root(), adapters, users, decoding)
    seed = from_args(TrainingSettings, args).seed
    text_settings = {name: value for name, value in dataclasses.asdict(decoding).items()
                     if name not in ("inference_batch_size", "run_name")}
    if not decoding.is_cd:
        text_settings.pop("contrastive_alpha")
    key = {"adapters": adapters_key, "tam": tam_stamp, "decoding": text_settings, "seed": seed,
           "max_words": data.max_words, "backend": handle.backend}
    metrics = predict_users(handle, spec, users, adapters, run_dir, decoding, seed, key, shard_from_args(args))
    for name, value in metrics.items():
        print(f"{spec.name} {run_dir.name} {name}: {value:.4f}")
    return metrics
