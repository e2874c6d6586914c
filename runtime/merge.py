"""Merge the shards of a per-user run (runtime.users) into the result one unsharded run writes.

    python -m runtime.merge runs/oppu/LaMP_4                          # shards that shared the folder
    python -m runtime.merge runs/oppu/LaMP_4 --from node0/out node1/out  # shards with their own folders
    python -m runtime.merge runs/oppu/LaMP_4 --golds dev_outputs.json    # and score the predictions

Checks that every user of the run's manifest (users.json) is done with the run's settings, copies the
finished user folders of --from into ROOT, writes ROOT/predictions.json (every user's predictions, in
the manifest's user order) and, with --golds, ROOT/scores.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from data.cli import parse_args, run


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime.merge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the run folder (holds or receives users.json and users/)")
    parser.add_argument("--from", dest="sources", nargs="+", type=Path, default=[], metavar="SHARD_ROOT",
                        help="run folders of shards that ran elsewhere; their finished users are copied in")
    parser.add_argument("--golds", type=Path, help="gold outputs {task, golds}: also write scores.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from data.errors import input_error
    from data.loaders import read_golds
    from runtime.run_folder import write_scores
    from runtime.users import merge_users, root_lock

    with root_lock(args.root):
        predictions_path = merge_users(args.root, args.sources)
        if predictions_path is None:
            print(f"every user is done: {args.root} (the run names no task, so no predictions to merge)")
            return 0
        print(f"predictions: {predictions_path}")
        if args.golds:
            task, golds = read_golds(args.golds)
            predicted_task, predictions = read_golds(predictions_path)
            if task != predicted_task:
                raise input_error(args.golds, f"task {task} is not the run's task {predicted_task}", field="task")
            for name, value in write_scores(args.root, task, golds, predictions).items():
                print(f"{task} {name}: {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
