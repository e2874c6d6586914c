"""A Markdown table of finished runs, one row per setting, read from the score files the runs wrote.

    python -m eval.report runs/lamp_rag/LaMP_4                        # every run folder below it
    python -m eval.report runs/demo/lamp_rag runs/demo/logit_adjust --metrics rouge-1 rouge-L \\
        --output runs/demo/results.md

Nothing is re-scored and nothing is method-specific: every method writes its results as run folders
(``runtime.run_folder``), and a run folder is any folder with a ``scores.json``, an eval report in the
official scorers' shape {<metric>: value, ..., "task", "num_examples", ...}: the metrics at the top level,
lampkit's counts and file names beside them (``eval.scoring.REPORT_FIELDS``). Every other entry is a metric
and must be a number, so a method's own measures (e.g. logit_adjust's profile_word_share) are columns like
the registry's. One row per run folder. A file given directly may also be an eval_all output
{task: eval report, ..., "missing_tasks", "ignored_files"}: one row per task.

A folder is searched at any depth for scores.json (checkpoints/ folders, the per-epoch scores of
fine-tuning, are skipped); its rows follow the files' modification times, i.e. the order in which
the stages ran. Rows are named by their folder relative to the given path; with several paths, the paths
keep their order and row names start with the path's own folder name. Columns: run, task (only when the
rows come from several tasks), n (the number of scored predictions), then the metrics: --metrics, else the
metrics every row has (every metric when they share none). A missing value prints as "-"; a --metrics name
that no row has is an error.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable instead of eval/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from data.cli import parse_args, run, writable_file
from data.errors import InputError, input_error
from data.io import atomic_write_text, read_json
from data.tasks import get_task

SCORES_FILE = "scores.json"
SKIPPED_FOLDERS = frozenset({"checkpoints"})
MISSING = "-"


@dataclass(frozen=True)
class Row:
    """One setting: its name, task, number of scored predictions and metric values."""
    name: str
    task: str
    num_predictions: int
    metrics: Mapping[str, float] = field(default_factory=dict)


def _eval_report_row(report: Mapping, name: str, source: str, where: str = "") -> Row:
    from eval.scoring import REPORT_FIELDS

    if not isinstance(report.get("num_examples"), int):
        raise input_error(source, "must be the number of scored examples", field=f"{where}num_examples")
    values = {metric: value for metric, value in report.items() if metric not in REPORT_FIELDS}
    for metric, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise input_error(source, "must be a number", field=f"{where}{metric}")
    return Row(name, str(report["task"]), report["num_examples"], {key: float(v) for key, v in values.items()})


def _task_name(key: str) -> str | None:
    try:
        return get_task(key).name
    except InputError:
        return None


EVAL_ALL_FIELDS = ("missing_tasks", "ignored_files")   # eval_all's entries beside the tasks


def rows_from_json(data: object, name: str, source: str = "<json>") -> list[Row]:
    """The rows of one loaded score file (an eval report or an eval_all output); ``source`` names it in errors."""
    if isinstance(data, dict) and {"task", "num_examples"} <= data.keys():
        return [_eval_report_row(data, name, source)]
    tasks = [key for key in data if key not in EVAL_ALL_FIELDS] if isinstance(data, dict) else []
    if tasks and all(_task_name(key) == key for key in tasks):
        rows = []
        for task in tasks:
            if not isinstance(data[task], dict):
                raise input_error(source, "must be an eval report", field=task)
            rows.append(_eval_report_row({**data[task], "task": task}, f"{name} {task}", source, f"{task}."))
        return rows
    raise input_error(source, 'not a score file: expected an eval report {<metric>: value, ..., "task", '
                              '"num_examples"} or an eval_all output {<task>: eval report, ...}')


def find_reports(folder: Path) -> list[Path]:
    """The scores.json of every run folder at any depth below ``folder``, oldest first (stage order)."""
    found = [path for path in folder.rglob(SCORES_FILE)
             if not SKIPPED_FOLDERS.intersection(path.relative_to(folder).parts[:-1])]
    return sorted(found, key=lambda path: (path.stat().st_mtime_ns, str(path)))


def collect_rows(paths: Sequence[str | os.PathLike]) -> list[Row]:
    """Rows of every score file given or found below the given folders, in the order described above."""
    rows: list[Row] = []
    prefix_with_path = len(paths) > 1
    for given in map(Path, paths):
        if given.is_dir():
            files = find_reports(given)
            if not files:
                raise input_error(given, f"no {SCORES_FILE} at any depth (not a run folder)")
            base = given
        elif given.is_file():
            files, base = [given], given.parent
        else:
            raise input_error(given, "not found")
        for path in files:
            relative = path.parent.relative_to(base).as_posix()
            if relative == ".":
                name = (given.resolve() if given.is_dir() else path.parent.resolve()).name
            else:
                name = f"{given.resolve().name}/{relative}" if prefix_with_path else relative
            rows.extend(rows_from_json(read_json(path), name, str(path)))
    return rows


def table_metrics(rows: Sequence[Row]) -> list[str]:
    """The metrics every row has, in first-row order; every metric (first-seen order) when none is shared."""
    seen: list[str] = []
    for row in rows:
        seen += [name for name in row.metrics if name not in seen]
    shared = [name for name in seen if all(name in row.metrics for row in rows)]
    return shared or seen


def markdown_table(rows: Sequence[Row], metrics: Sequence[str] | None = None) -> str:
    """| run | [task |] n | metric ... | with 4 decimals; the task column only for rows of several tasks."""
    if not rows:
        raise InputError("no rows to tabulate")
    present = list(dict.fromkeys(name for row in rows for name in row.metrics))
    unknown = [name for name in metrics or () if name not in present]
    if unknown:
        raise InputError(f"--metrics: no row has {', '.join(unknown)}; the rows have {', '.join(present)}")
    metrics = list(metrics) if metrics else table_metrics(rows)
    with_task = len({row.task for row in rows}) > 1
    header = ["run", *(["task"] if with_task else []), "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [f"{row.metrics[name]:.4f}" if name in row.metrics else MISSING for name in metrics]
        cells = [row.name, *([row.task] if with_task else []), str(row.num_predictions), *values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(rows: Sequence[Row], metrics: Sequence[str] | None = None, title: str | None = None) -> str:
    """The title line (default: the rows' tasks), an empty line and the table."""
    if title is None:
        title = ", ".join(dict.fromkeys(row.task for row in rows))
    return f"{title}\n\n{markdown_table(rows, metrics)}\n"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="run folders (searched at any depth) or score files")
    parser.add_argument("--metrics", nargs="+", metavar="NAME", help="columns, e.g. rouge-1 rouge-L")
    parser.add_argument("--title", help="line printed above the table (default: the tasks)")
    parser.add_argument("--output", type=writable_file, metavar="FILE",
                        help="also write the title and table there")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    text = render(collect_rows(args.paths), args.metrics, args.title)
    if args.output:  # the file first: a closed pipe (`| head`) cannot cost it
        atomic_write_text(args.output, text)
    print("\n" + text + (f"table: {args.output}\n" if args.output else ""), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
