"""CoPe's flags, defined once (names as in the CoPe README; spec curp_cope_oppu 3), shared by the scripts."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from data.cli import ModelOptions, add_dataclass_arguments, add_model_arguments, from_args, option, task_name
from runtime.users import add_shard_arguments


@dataclass
class DataOptions:
    """Where the OPPU per-user folder is and where the run's artifacts go."""

    task_name: str = option(help="CoPe or registry task name (news_headline, scholarly_title, "
                                 "abstract_generation, review_writing, topic_writing, LaMP_4, ...)",
                            aliases=["--task"], type=task_name)
    data_path: Path = option(help="the OPPU folder: user_top_100_history.json, its label file and "
                                  "user_others.json (python -m data.convert to-oppu makes one)", type=Path)
    output_dir: Path | None = option(None, "artifacts and run folders (default: runs/cope/<task>)", type=Path)
    num_users: int | None = option(None, "only the first N target users (default: all)", minimum=1)
    max_history: int | None = option(None, "train on each user's last N history items (default: all)",
                                     minimum=1)
    max_words: int | None = option(768, "cut every history field and query input to its first N words "
                                        "(the reference's 768)", minimum=1)
    num_others: int | None = option(None, "train the TAM on the first N non-target users (default: all)",
                                    minimum=1)

    def root(self) -> Path:
        return self.output_dir or Path("runs") / "cope" / self.task_name


@dataclass
class TrainingSettings:
    """Optimisation (defaults per step: the reference's, spec curp_cope_oppu 3.4, 3.5, 3.8)."""

    is_train: bool = option(False, "train (else: inference with the trained adapters)")
    batch_size: int = option(8, "examples per training step", minimum=1)
    max_epoch: float = option(3, "training epochs", minimum=0)
    learning_rate: float | None = option(None, "peak learning rate (default: 1e-4, DPO 5e-6)")
    seed: int = option(42, "seed of adapter initialisation, data order and sampling")


@dataclass
class DecodingSettings:
    """How outputs are decoded (spec curp_cope_oppu 3.5 and 3.9)."""

    is_sampling: bool = option(False, "sample (temperature 0.3, top-k 50, top-p 0.95) instead of greedy")
    is_cd: bool = option(False, "contrastive decoding: the user's adapter against the TAM (adapter off)")
    contrastive_alpha: float = option(0.1, "weight of the TAM's log-probability subtracted in --is_cd", minimum=0)
    repetition_penalty: float = option(1.0, "Hugging Face repetition penalty (1 = none)", minimum=0)
    max_new_tokens: int | None = option(None, "new tokens per output (default: the task's length)", minimum=1)
    inference_batch_size: int = option(16, "prompts per decoding batch", minimum=1)
    users_per_batch: int = option(16, "users decoded together: their adapters sit side by side on the one base "
                                      "model and their queries share batches, each row with its own adapter",
                                  minimum=1)
    run_name: str | None = option(None, "name of the predictions' run folder under --output_dir "
                                        "(default: the variant, e.g. OPPU+CD)")

    def generate_kwargs(self, spec) -> dict:
        sampling = {"do_sample": True, "temperature": 0.3, "top_k": 50, "top_p": 0.95} if self.is_sampling \
            else {"do_sample": False}
        return {"max_new_tokens": self.max_new_tokens or spec.max_new_tokens,
                "repetition_penalty": self.repetition_penalty, **sampling}


def make_parser(prog: str, doc: str, *, training: bool = True, decoding: bool = True, shards: bool = True,
                training_defaults: dict | None = None, decoding_exclude=()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, DataOptions, "data")
    add_model_arguments(parser)
    if training:
        add_dataclass_arguments(parser, TrainingSettings, "training", defaults=training_defaults)
    if decoding:
        add_dataclass_arguments(parser, DecodingSettings, "inference", exclude=decoding_exclude)
    if shards:
        add_shard_arguments(parser)
    return parser


def parsed(args: argparse.Namespace) -> tuple[DataOptions, ModelOptions]:
    """The data and model options; a per-user step (one with shard flags) also takes its shard of the users
    here and, under torchrun, runs it alone (runtime.distributed.independent_workers), before any model loads.
    The TAM, one model for all, trains with DDP instead."""
    if hasattr(args, "num_shards"):
        from runtime.distributed import independent_workers

        independent_workers(args)
    return from_args(DataOptions, args), from_args(ModelOptions, args)
