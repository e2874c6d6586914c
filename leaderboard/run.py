"""Run every method on the same users of each task, score them with eval/, and write the leaderboard.

    python -m leaderboard --quick                                  # the sample, the quick cells
    python -m leaderboard --task LaMP_4 --data ../shared/data/gitlamp --num_users 16
    python -m leaderboard --list                                   # the cells and their commands, nothing run
    python -m leaderboard --quick --methods "RAG BM25"             # a subset (the baseline always runs)

Outputs in --out (default runs/leaderboard): leaderboard.md, leaderboard.csv, <task>.png, config.json,
ledger.json (the steps run and their cost), logs/ (each step's stdout and stderr), <task>/ (the methods' run
folders) and data/<task>/ (the dev users kept by --num_users). Rerunning reuses every finished step.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable instead of leaderboard/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime
import os
import shlex
from typing import Callable, Sequence

from data.cli import REPO_ROOT, git_commit, parse_args, run, task_name, writable_dir, write_config
from data.errors import InputError
from leaderboard.cell import Cell, TaskData
from leaderboard.cells import DEFAULT_TASKS
from leaderboard.cells import method_cells as listed_method_cells
from leaderboard.report import write_outputs
from leaderboard.results import task_rows
from leaderboard.runner import DONE, run_cells
from leaderboard.sources import SAMPLE, data_stamp, dev_golds, repo_path, task_data, task_folder

MethodCells = Callable[[TaskData, str, Path, bool], list[Cell]]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", nargs="+", type=task_name, default=list(DEFAULT_TASKS),
                        help=f"tasks to compare the methods on (default: {' '.join(DEFAULT_TASKS)})")
    parser.add_argument("--data", default=SAMPLE,
                        help="'sample' (data/sample/<task>) or a folder in the LaMP layout (train_questions.json, "
                             "train_outputs.json, dev_questions.json, dev_outputs.json) or the LongLaMP one "
                             "(train.json, val.json), or holding one such folder per task; scored on the dev split")
    parser.add_argument("--model", default="default", help="'default' (packaged SmolLM2-135M-Instruct) or a model path")
    parser.add_argument("--quick", action="store_true", help="only the quick cells, at their quick sizes")
    parser.add_argument("--out", type=writable_dir, default=Path("runs/leaderboard"),
                        help="output folder (default: runs/leaderboard)")
    parser.add_argument("--num_users", type=int, default=None,
                        help="only the first N dev users of each task (default: all)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="only these methods (names as --list prints them); the baseline always runs")
    parser.add_argument("--list", action="store_true", help="print the cells and their commands, run nothing")
    return parser


def select_cells(cells: Sequence[Cell], task: str, quick: bool, methods: Sequence[str] | None) -> list[Cell]:
    """The cells to run: the quick ones with --quick, the named ones with --methods (plus the baseline)."""
    names = [cell.method for cell in cells]
    if len(set(names)) != len(names):
        raise InputError(f"{task}: method names must be unique, got {names}")
    if sum(cell.baseline for cell in cells) != 1:
        raise InputError(f"{task}: the cell list must have exactly one baseline cell")
    return [cell for cell in cells if (cell.in_quick or not quick)
            and (cell.baseline or methods is None or cell.method in methods)]


def main(argv: Sequence[str] | None = None, method_cells: MethodCells | None = None) -> int:
    args = parse_args(make_parser(), argv)
    if args.num_users is not None and args.num_users < 1:
        raise InputError(f"--num_users must be at least 1, got {args.num_users}")
    method_cells = method_cells or listed_method_cells
    out = repo_path(args.out)
    data_source = args.data if args.data == SAMPLE else str(repo_path(args.data))
    os.chdir(REPO_ROOT)                      # where every step runs: the paths above are relative to it
    datasets, cells_of = {}, {}
    for task in dict.fromkeys(args.task):
        datasets[task] = task_data(task, data_source, out, args.num_users)
        every = method_cells(datasets[task], args.model, out / task, args.quick)
        cells_of[task] = select_cells(every, task, args.quick, args.methods)
    if args.methods:
        known = {cell.method for cells in cells_of.values() for cell in cells}
        unknown = [name for name in args.methods if name not in known]
        if unknown:
            raise InputError(f"--methods: no cell named {unknown}; there are {sorted(known)} (--list shows them)")
    if args.list:
        for task, cells in cells_of.items():
            print(f"== {task} ({len(cells)} cells)")
            for cell in cells:
                print(f"{cell.method}{' (baseline)' if cell.baseline else ''} -> {cell.predictions}")
                for argv_of_step in cell.steps:
                    print(f"    {shlex.join(argv_of_step)}")
        return 0
    write_config(out, args)
    stamps = {task: data_stamp(data) for task, data in datasets.items()}
    runs = run_cells([cell for cells in cells_of.values() for cell in cells], out, stamps)
    baseline_name = next(cell.method for cells in cells_of.values() for cell in cells if cell.baseline)
    rows_by_task = {}
    for task, data in datasets.items():
        task_runs = [each for each in runs if each.cell.task == task]
        rows_by_task[task] = task_rows(task, dev_golds(data), str(data.dev_outputs or data.dev_questions), task_runs)
    header = {
        "command": shlex.join(["python", "-m", "leaderboard", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git commit": git_commit() or "unknown",
        "model": args.model,
        "data": "; ".join(f"{task}: {task_folder(task, data_source)}"
                          f" dev split{f', first {args.num_users} users' if args.num_users else ''}"
                          for task in datasets) + (" (--quick sizes)" if args.quick else ""),
    }
    written = write_outputs(out, rows_by_task, header, baseline_name)
    print((out / "leaderboard.md").read_text(encoding="utf-8"))
    failed = sum(row.status != DONE for rows in rows_by_task.values() for row in rows)
    print(f"{sum(map(len, rows_by_task.values()))} cells, {failed} failed. Outputs: "
          + ", ".join(str(path) for path in written) + f"; {out / 'ledger.json'}, {out / 'logs'}/, {out}/config.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
