"""CoPe step 4: score each pseudo-negative under the user's OPPU adapter and under the TAM, and choose the
negative DPO trains against (spec curp_cope_oppu 3.7).

    python -m cope.compute_scores --task_name news_headline --data_path DIR --std max

Score = mean log-probability per token of the candidate given the item's prompt; diff = TAM - OPPU;
--std max keeps the candidate with the largest diff, min the smallest. Both scores come from one model:
one batch mixes rows with the user's adapter and rows with it switched off (the TAM). Per user into
<output_dir>/scores_<std>/users/<user>/selection.json (resumable, shardable); once every user is done also
<output_dir>/user_top_100_history_with_pseudo_negatives_<std>.json.
"""
from __future__ import annotations

from typing import Sequence

from data.cli import parse_args, run


def make_parser():
    from cope.negatives import SELECTIONS
    from cope.options import make_parser as cope_parser

    parser = cope_parser("python -m cope.compute_scores", __doc__, training=False, decoding=False)
    group = parser.add_argument_group("selection")
    group.add_argument("--std", choices=SELECTIONS, default="max",
                       help="max: the most TAM-like candidate; min: the least (default: %(default)s)")
    group.add_argument("--inference_batch_size", type=int, default=16, help="pairs per batch (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from cope.negatives import NEGATIVES_DIR, NEGATIVES_FILE, SELECTION_FILE, score_user, scores_dir, write_combined
    from cope.options import parsed
    from cope.pipeline import (SFT_STAGE, USER_ADAPTER, finished_run_key, load_task_model, stage_root,
                               user_adapter_folder)
    from cope.steps import open_run, target_users
    from data.fingerprint import fingerprint
    from data.io import atomic_write_json, read_json
    from runtime.users import done_marker, run_users, shard_from_args, user_folder

    data, model = parsed(args)
    spec, users = target_users(data)
    negatives, sft = data.root() / NEGATIVES_DIR, stage_root(data.root(), SFT_STAGE)
    key = {"negatives": finished_run_key(negatives, users, "compute_scores"),
           "sft": finished_run_key(sft, users, "compute_scores"), "std": args.std}
    stage = scores_dir(data.root(), args.std)
    open_run(args, stage)
    handle, tam_stamp = load_task_model(model, data.root())
    key["tam"] = tam_stamp
    by_name = {user.name: user for user in users}

    def work(name: str, folder) -> None:
        candidates = read_json(user_folder(negatives, name) / NEGATIVES_FILE)
        handle.load_adapter(USER_ADAPTER, user_adapter_folder(sft, name), replace=True)
        try:
            rows = score_user(handle, spec, by_name[name], candidates, args.std, args.inference_batch_size)
        finally:
            handle.delete_adapter(USER_ADAPTER)
        atomic_write_json(folder / SELECTION_FILE, rows)

    run_users(stage, list(by_name), work, key=key, shard=shard_from_args(args), desc="users scored")
    run_key = fingerprint(key)   # hashed once, not per user
    if all(done_marker(stage, name, run_key) for name in by_name):
        write_combined(data.root(), spec, users, stage, SELECTION_FILE, f"_{args.std}")
    print(f"selections: {stage}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
