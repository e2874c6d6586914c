"""CoPe step 2: one LoRA adapter per target user on top of the TAM (OPPU), and inference with it
(spec curp_cope_oppu 3.5: r 8, alpha 8 on q,v; 2 epochs, lr 1e-4, batch 4).

    python -m cope.oppu_sft --task_name news_headline --data_path DIR --batch_size 4 --max_epoch 2 --is_train
    python -m cope.oppu_sft --task_name news_headline --data_path DIR                     # -> <output_dir>/OPPU
    python -m cope.oppu_sft --task_name news_headline --data_path DIR --is_cd --contrastive_alpha 0.1 \\
        --repetition_penalty 1.0                                                        # -> <output_dir>/OPPU+CD

Training: each user's adapter is fresh and sees that user's history items alone; adapters go to
<output_dir>/adapters/OPPU_SFT/users/<user>/adapter/. Users already done with the same settings are
skipped on a rerun, and --num_shards/--shard_id split the users over processes (python -m runtime.merge
joins the shards' folders). Inference: greedy, or --is_sampling; --is_cd decodes with the contrastive
score of the user's adapter against the TAM (the same model with the adapter off, one model in memory).
Predictions are per user and resumable; scores.json is written when every user is done.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from data.cli import parse_args, run


def make_parser():
    from cope.options import make_parser as cope_parser

    return cope_parser("python -m cope.oppu_sft", __doc__, training_defaults={"batch_size": 4, "max_epoch": 2})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from cope.pipeline import SFT_STAGE
    from cope.steps import infer

    if args.is_train:
        train(args)
    else:
        infer(args, SFT_STAGE, "OPPU")
    return 0


def train(args) -> None:
    from cope.options import parsed
    from cope.pipeline import SFT_STAGE, USER_LORA, load_task_model, run_user_training, sft_user, stage_root
    from cope.steps import open_run, target_users, training_options
    from runtime.users import shard_from_args

    data, model = parsed(args)
    spec, users = target_users(data)
    stage = stage_root(data.root(), SFT_STAGE)
    open_run(args, stage)
    handle, tam_stamp = load_task_model(model, data.root())
    options = training_options(args, spec)
    key = {"tam": tam_stamp, "lora": USER_LORA, "options": dataclasses.asdict(options),
           "inputs": (data.max_history, data.max_words)}
    run_user_training(stage, users, lambda user, folder: sft_user(handle, spec, user, options, folder), key,
                      shard_from_args(args))
    print(f"OPPU adapters: {stage}")


if __name__ == "__main__":
    raise SystemExit(run(main))
