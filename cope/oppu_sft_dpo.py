"""CoPe step 5: DPO of each user's OPPU adapter against the chosen pseudo-negatives, reference = the TAM
(the same model with the adapter disabled; spec curp_cope_oppu 3.8: beta 0.01, lr 5e-6, 1 epoch, batch 8),
and inference with the result.

    python -m cope.oppu_sft_dpo --task_name news_headline --data_path DIR --batch_size 8 --dpo_beta 0.01 \\
        --negative_sampling_method pseudo --mode max --is_train
    python -m cope.oppu_sft_dpo --task_name news_headline --data_path DIR --is_cd --contrastive_alpha 0.1
                                                                           # -> <output_dir>/OPPU+DPO+CD

Pairs per history item: chosen = the user's own output, rejected = the negative cope.compute_scores chose
with --std <mode>. Adapters go to <output_dir>/adapters/OPPU_SFT+DPO/users/<user>/adapter/; per-user resume
and sharding as in cope.oppu_sft; inference flags as there.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from data.cli import parse_args, run


def make_parser():
    from cope.negatives import SELECTIONS
    from cope.options import make_parser as cope_parser

    parser = cope_parser("python -m cope.oppu_sft_dpo", __doc__,
                         training_defaults={"batch_size": 8, "max_epoch": 1})
    group = parser.add_argument_group("DPO")
    group.add_argument("--dpo_beta", type=float, default=0.01, help="DPO beta (default: %(default)s)")
    group.add_argument("--negative_sampling_method", choices=["pseudo"], default="pseudo",
                       help="where rejected outputs come from: the TAM's chosen samples (default: %(default)s)")
    group.add_argument("--mode", choices=SELECTIONS, default="max",
                       help="which cope.compute_scores --std selection to train on (default: %(default)s)")
    return parser


DPO_LEARNING_RATE = 5e-6


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from cope.pipeline import DPO_STAGE
    from cope.steps import infer

    if args.is_train:
        train(args)
    else:
        infer(args, DPO_STAGE, "OPPU+DPO")
    return 0


def train(args) -> None:
    from cope.negatives import SELECTION_FILE, scores_dir
    from cope.options import parsed
    from cope.pipeline import (DPO_STAGE, SFT_STAGE, dpo_user, finished_run_key, load_task_model,
                               run_user_training, stage_root, user_adapter_folder)
    from cope.steps import open_run, target_users, training_options
    from data.io import read_json
    from runtime.users import shard_from_args, user_folder

    data, model = parsed(args)
    spec, users = target_users(data)
    sft, scores = stage_root(data.root(), SFT_STAGE), scores_dir(data.root(), args.mode)
    keys = {"sft": finished_run_key(sft, users, "DPO"), "negatives": finished_run_key(scores, users, "DPO")}
    stage = stage_root(data.root(), DPO_STAGE)
    open_run(args, stage)
    handle, tam_stamp = load_task_model(model, data.root())
    options = training_options(args, spec, DPO_LEARNING_RATE)
    key = {**keys, "tam": tam_stamp, "beta": args.dpo_beta, "options": dataclasses.asdict(options),
           "inputs": (data.max_history, data.max_words)}

    def train_user(user, folder):
        selection = read_json(user_folder(scores, user.name) / SELECTION_FILE)
        dpo_user(handle, spec, user, selection, user_adapter_folder(sft, user.name), options, args.dpo_beta, folder)

    run_user_training(stage, users, train_user, key, shard_from_args(args))
    print(f"OPPU+DPO adapters: {stage}")


if __name__ == "__main__":
    raise SystemExit(run(main))
