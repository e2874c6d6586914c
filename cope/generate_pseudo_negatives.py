"""CoPe step 3: candidate negatives sampled from the TAM for every history item of every target user
(spec curp_cope_oppu 3.6: 3 samples, temperature 1.0, top-p 0.95).

    python -m cope.generate_pseudo_negatives --task_name news_headline --data_path DIR --response_num 3 \\
        --temperature 1.0

Samples come from the TAM (the base with the TAM merged, no user adapter) with the prompt every other step
uses for the item (cope.data), in batches of --inference_batch_size, seeded per user: through vLLM when it
is installed and a GPU is there (the merged TAM saved once under <output_dir>/TAM_merged/), else Hugging Face
generate. Per user into <output_dir>/pseudo_negatives/users/<user>/negatives.json (resumable, shardable);
once every user is done also <output_dir>/user_top_100_history_with_pseudo_negatives.json.
"""
from __future__ import annotations

from typing import Sequence

from data.cli import parse_args, run


def make_parser():
    from cope.options import make_parser as cope_parser

    parser = cope_parser("python -m cope.generate_pseudo_negatives", __doc__, training=False, decoding=False)
    group = parser.add_argument_group("sampling")
    group.add_argument("--response_num", type=int, default=3, help="samples per history item (default: %(default)s)")
    group.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: %(default)s)")
    group.add_argument("--repetition_penalty", type=float, default=1.0, help="1 = none (default: %(default)s)")
    group.add_argument("--max_new_tokens", type=int, default=None, help="default: the task's length")
    group.add_argument("--inference_batch_size", type=int, default=16, help="prompts per batch (default: %(default)s)")
    group.add_argument("--seed", type=int, default=42, help="sampling seed (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from cope.negatives import NEGATIVES_DIR, NEGATIVES_FILE, sample_candidates, write_combined
    from cope.options import parsed
    from cope.pipeline import load_sampling_model
    from cope.steps import open_run, target_users
    from data.errors import InputError
    from data.fingerprint import fingerprint
    from data.io import atomic_write_json
    from runtime.users import done_marker, run_users, shard_from_args

    if args.response_num < 1:
        raise InputError(f"--response_num must be at least 1, got {args.response_num}")
    data, model = parsed(args)
    spec, users = target_users(data)
    stage = data.root() / NEGATIVES_DIR
    open_run(args, stage)
    handle, tam_stamp = load_sampling_model(model, data.root())
    max_new_tokens = args.max_new_tokens or spec.max_new_tokens
    by_name = {user.name: user for user in users}

    def work(name: str, folder) -> None:
        rows = sample_candidates(handle, spec, by_name[name], args.response_num, args.temperature, max_new_tokens,
                                 args.repetition_penalty, args.seed, args.inference_batch_size)
        atomic_write_json(folder / NEGATIVES_FILE, rows)

    key = {"tam": tam_stamp, "backend": handle.backend, "response_num": args.response_num,
           "temperature": args.temperature, "repetition_penalty": args.repetition_penalty, "max_new_tokens": max_new_tokens, "seed": args.seed,
           "max_words": data.max_words,
           "history": {user.name: [item["id"] for item in user.profile] for user in users}}
    run_users(stage, list(by_name), work, key=key, shard=shard_from_args(args), desc="users sampled")
    run_key = fingerprint(key)   # hashed once, not per user
    if all(done_marker(stage, name, run_key) for name in by_name):
        write_combined(data.root(), spec, users, stage, NEGATIVES_FILE, "")
    print(f"pseudo-negatives: {stage}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
