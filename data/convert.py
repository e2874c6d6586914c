"""Convert LaMP / LongLaMP files to the OPPU/CoPe per-user layout and back (spec curp_cope_oppu.md 4).

    # LaMP questions + outputs -> OPPU folder, the 100 users with the longest histories as targets
    python -m data.convert to-oppu --questions dev_questions.json --outputs dev_outputs.json \\
        --output_dir runs/oppu/LaMP_4 --num_users 100 --select longest
    # LongLaMP records (JSON, JSON Lines or parquet)
    python -m data.convert to-oppu --questions val.json --task LongLaMP_2 --output_dir runs/oppu/LongLaMP_2
    # back: OPPU folder -> <name>_questions.json + <name>_outputs.json, or <name>.json for LongLaMP
    python -m data.convert to-lamp --input_dir runs/oppu/LaMP_4 --output_dir runs/lamp/LaMP_4

OPPU folder:
  user_top_100_history.json        target users [{user_id | user_name, profile, query: [{id, input, gold}]}]
  user_top_100_history_label.json  {"task", "golds": [{id, output}]} for the target users' queries
  user_others.json                 every other user, same structure
Users are keyed "user_id" for LaMP and "user_name" for LongLaMP tasks, and questions are grouped by user
id. A LaMP file without user ids (the user-based splits) has one user per question, keyed by the
question id (`to-lamp --no_user_id` leaves those ids out again). Questions of one user with different
profiles (e.g. a growing temporal history) become separate entries with the same user id, so each query
keeps exactly the profile it was asked with. Users keep the order of the input file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from data.cli import add_task_argument, parse_args, run, write_config, writable_dir
from data.errors import InputError, input_error
from data.io import atomic_write_json
from data.loaders import (USER_FIELDS, iter_examples, read_golds, write_lamp_outputs, write_lamp_questions,
                          write_longlamp_records)
from data.records import Example
from data.tasks import TaskSpec, get_task

HISTORY = "user_top_100_history.json"
LABELS = "user_top_100_history_label.json"
OTHERS = "user_others.json"


def user_key(spec: TaskSpec) -> str:
    return "user_name" if spec.benchmark == "LongLaMP" else "user_id"


def group_users(examples: Iterable[Example], spec: TaskSpec) -> list[dict]:
    """OPPU user entries, in order of first appearance: one per (user id, profile, user fields)."""
    key = user_key(spec)
    entries: dict[tuple[str, str], dict] = {}
    for example in examples:
        user = example.user_id if example.user_id is not None else example.id
        extra = dict(example.extra)
        user_fields = extra.pop(USER_FIELDS, {})
        group = (user, json.dumps([example.profile, user_fields], sort_keys=True))
        if group not in entries:
            entries[group] = {key: user, **user_fields, "profile": example.profile, "query": []}
        query = {"id": example.id, "input": example.input}
        if example.target is not None:
            query["gold"] = example.target
        entries[group]["query"].append({**query, **extra})
    return list(entries.values())


def select_targets(entries: list[dict], key: str, num_users: int | None, select: str, seed: int) -> set[str]:
    """The target user ids: the ``num_users`` (None: all) with the longest histories (distinct profile items;
    ties keep file order), the first ones, or a seeded random sample."""
    history: dict[str, set] = {}
    for entry in entries:
        history.setdefault(entry[key], set()).update(item["id"] for item in entry["profile"])
    users = list(history)
    if select == "longest":
        users.sort(key=lambda user: len(history[user]), reverse=True)
    elif select == "random":
        users = random.Random(seed).sample(users, len(users))
    return set(users[:num_users])


def to_oppu(examples: list[Example], spec: TaskSpec, output_dir: Path, num_users: int | None, select: str,
            seed: int, source: Path, other_examples: list[Example] | None = None) -> list[Path]:
    """Write the OPPU folder; everything is checked before the first file is written. The non-target users are
    the rest of ``examples``, or with ``other_examples`` every user of those (e.g. the train split) but the targets."""
    key = user_key(spec)
    entries = group_users(examples, spec)
    targets = select_targets(entries, key, num_users, select, seed)
    top = [entry for entry in entries if entry[key] in targets]
    pool = entries if other_examples is None else group_users(other_examples, spec)
    others = [entry for entry in pool if entry[key] not in targets]
    queries = [query for entry in top for query in entry["query"]]
    without_gold = [query["id"] for query in queries if "gold" not in query]
    if without_gold and len(without_gold) < len(queries):
        raise input_error(source, "some target questions have a gold and this one has none",
                          record=without_gold[0], field="output")
    written = [atomic_write_json(output_dir / HISTORY, top)]
    if not without_gold:
        golds = [{"id": query["id"], "output": query["gold"]} for query in queries]
        written.append(atomic_write_json(output_dir / LABELS, {"task": spec.name, "golds": golds}))
    else:  # a label file of an earlier conversion into this folder would attach the wrong golds
        (output_dir / LABELS).unlink(missing_ok=True)
    written.append(atomic_write_json(output_dir / OTHERS, others))
    return written


def _read(path: Path, outputs: Path | None, task: str | None) -> list[Example]:
    return list(tqdm(iter_examples(path, outputs, task=task), desc=f"reading {path.name}", unit=" examples"))


def from_oppu(input_dir: Path, task: str | None = None, users: str = "all") -> tuple[TaskSpec, list[Example]]:
    """The Examples of an OPPU folder (target users, others or both); golds also come from the label file."""
    labels = input_dir / LABELS if (input_dir / LABELS).is_file() else None
    if task is None and labels is not None:
        task = read_golds(labels)[0]
    examples = []
    if users in ("all", "target"):
        examples += _read(input_dir / HISTORY, labels, task)
    if users in ("all", "others"):
        examples += _read(input_dir / OTHERS, None, task)
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise input_error(input_dir / OTHERS, f"duplicate id (also in {HISTORY})", record=example.id,
                              field="id")
        seen.add(example.id)
    return get_task(examples[0].task if examples else task), examples


# ----------------------------------------------------------------------------- command line

def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    oppu = commands.add_parser("to-oppu", help="LaMP / LongLaMP files -> OPPU per-user folder",
                               description="LaMP questions (+ outputs), a merged file or LongLaMP records "
                                           "-> the OPPU/CoPe per-user folder.")
    oppu.add_argument("--questions", type=Path, required=True,
                      help="LaMP questions file, merged file, or LongLaMP records (.json, .jsonl, .parquet)")
    oppu.add_argument("--outputs", type=Path, help="LaMP outputs file {task, golds}, joined by id")
    add_task_argument(oppu, required=False)
    oppu.add_argument("--output_dir", type=writable_dir, required=True, help="the OPPU folder to write")
    oppu.add_argument("--num_users", type=user_count, default=100,
                      help="target users written to user_top_100_history.json, or 'all' (default: %(default)s)")
    oppu.add_argument("--select", choices=["longest", "first", "random"], default="longest",
                      help="which users are targets: longest histories, first in the file, or a seeded "
                           "random sample (default: %(default)s)")
    oppu.add_argument("--seed", type=int, default=0, help="seed of --select random")
    oppu.add_argument("--others", type=Path,
                      help="take the non-target users (user_others.json) from this file, e.g. the train split, "
                           "instead of the rest of --questions (target users in it are left out)")
    oppu.add_argument("--others_outputs", type=Path, help="LaMP outputs file of --others")

    lamp = commands.add_parser("to-lamp", help="OPPU per-user folder -> LaMP / LongLaMP files",
                               description="An OPPU/CoPe per-user folder -> LaMP questions + outputs files, "
                                           "or LongLaMP records.")
    lamp.add_argument("--input_dir", type=Path, required=True, help="the OPPU folder to read")
    add_task_argument(lamp, required=False)
    lamp.add_argument("--output_dir", type=writable_dir, required=True)
    lamp.add_argument("--format", choices=["lamp", "longlamp"],
                      help="lamp: <name>_questions.json + <name>_outputs.json; longlamp: <name>.json rows "
                           "(default: by the task's benchmark)")
    lamp.add_argument("--name", default="oppu", help="file name stem (default: %(default)s)")
    lamp.add_argument("--users", choices=["all", "target", "others"], default="all",
                      help="which users to write (default: %(default)s)")
    lamp.add_argument("--no_user_id", action="store_true",
                      help="leave user ids out (the user-based LaMP layout, one user per question)")
    return parser


def user_count(text: str) -> int | None:
    """``--num_users``: a number of users, or "all" (None)."""
    return None if text == "all" else int(text)


def run_to_oppu(args: argparse.Namespace) -> list[Path]:
    if args.num_users is not None and args.num_users < 1:
        raise input_error(None, f"--num_users must be at least 1, got {args.num_users}")
    if args.others_outputs and not args.others:
        raise InputError("--others_outputs needs --others")
    examples = _read(args.questions, args.outputs, args.task)
    spec = get_task(examples[0].task if examples else args.task)
    others = None if args.others is None else _read(args.others, args.others_outputs, spec.name)
    return to_oppu(examples, spec, args.output_dir, args.num_users, args.select, args.seed, args.questions, others)


def run_to_lamp(args: argparse.Namespace) -> list[Path]:
    spec, examples = from_oppu(args.input_dir, args.task, args.users)
    if args.no_user_id and spec.user_id_required:
        raise InputError(f"--no_user_id: every {spec.name} record names its user ('{spec.user_id_field}')")
    if args.no_user_id:
        examples = [dataclasses.replace(example, user_id=None) for example in examples]
    if (args.format or spec.benchmark.lower()) == "longlamp":
        return [write_longlamp_records(args.output_dir / f"{args.name}.json", examples, spec.name)]
    with_gold = [example.target is not None for example in examples]
    if any(with_gold) and not all(with_gold):
        missing = examples[with_gold.index(False)]
        raise input_error(args.input_dir, "some questions have a gold and this one has none",
                          record=missing.id, field="gold")
    written = [write_lamp_questions(args.output_dir / f"{args.name}_questions.json", examples)]
    if any(with_gold):
        written.append(write_lamp_outputs(args.output_dir / f"{args.name}_outputs.json", spec.name, examples))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    written = {"to-oppu": run_to_oppu, "to-lamp": run_to_lamp}[args.command](args)
    written.append(write_config(args.output_dir, args))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
