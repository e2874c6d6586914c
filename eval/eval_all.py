"""Score every task of a predictions zip against a golds zip (official LaMP ``eval_all.py`` interface).

    python -m eval.eval_all --golds_zip golds.zip --preds_zip preds.zip --output_file results.json
    python -m eval.eval_all ... --temp_dir ./tmp --require_all

Each JSON file in a zip is found at any depth and keyed by its internal "task" field; file names do not
matter. Both zips are extracted into a fresh folder created inside --temp_dir (default: the system's temp
folder) and only that folder is removed afterwards. Tasks with golds but no predictions are listed in the
output ("missing_tasks") and printed; they fail the run only with --require_all, and predictions for no task
at all are an error. Output, keyed by task as the official eval_all's, each task's metrics at its top level
with lampkit's counts beside them: {"LaMP_1": {"accuracy": ..., "f1": ..., "task", "num_examples", ...},
..., "missing_tasks": [...], "ignored_files": [...]}. The output path is checked before anything is read.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable instead of eval/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import shutil
import tempfile
import zipfile
from typing import Sequence

from data.cli import add_workers_argument, parse_args, run, writable_file
from data.errors import InputError, input_error
from data.io import atomic_write_json, read_json
from data.tasks import list_tasks
from eval.eval_task import format_report


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.eval_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golds_zip", type=Path, required=True, help="zip of gold outputs files")
    parser.add_argument("--preds_zip", type=Path, required=True, help="zip of prediction files")
    parser.add_argument("--output_file", type=writable_file, help="where to write the JSON results (optional)")
    parser.add_argument("--temp_dir", type=Path, default=None,
                        help="folder in which a fresh extraction folder is made and later removed "
                             "(default: the system temp folder); its other contents are never touched")
    parser.add_argument("--require_all", action="store_true",
                        help="fail when a task of the golds has no predictions")
    parser.add_argument("--allow_missing", action="store_true",
                        help="score gold ids that have no prediction as empty outputs")
    add_workers_argument(parser, "ROUGE/METEOR on large files")
    return parser


def extract(zip_path: Path, destination: Path) -> None:
    if not zip_path.is_file():
        raise input_error(zip_path, "file not found")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(destination)  # zipfile drops absolute and ".." parts of member names
    except zipfile.BadZipFile as err:
        raise input_error(zip_path, f"not a zip file ({err})") from None


def outputs_by_task(zip_path: Path, folder: Path, ignored: list[str]) -> dict:
    """{canonical task: OutputsFile} for every {"task", "golds"} JSON extracted into folder, at any depth.

    Other JSON files (question files, macOS metadata) are added to ``ignored``; two files for a task raise.
    """
    from eval.scoring import outputs_from_json

    found = {}
    for path in sorted(folder.rglob("*.json")):
        source = f"{zip_path}:{path.relative_to(folder).as_posix()}"
        if "__MACOSX" in path.parts or path.name.startswith("._"):
            ignored.append(source)
            continue
        try:
            data = read_json(path)
        except InputError as err:
            raise InputError(str(err).replace(str(path), source, 1)) from None
        if not (isinstance(data, dict) and "task" in data and "golds" in data):
            ignored.append(source)
            continue
        outputs = outputs_from_json(data, source)
        if outputs.task in found:
            raise input_error(zip_path, f"two files for task {outputs.task}: {found[outputs.task].source} "
                                        f"and {source}")
        found[outputs.task] = outputs
    return found


def read_zips(golds_zip: Path, preds_zip: Path, temp_dir: Path | None) -> tuple[dict, dict, list[str]]:
    """Gold and prediction files by task, read from a fresh extraction folder that is removed after."""
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="eval_all_", dir=temp_dir))
    try:
        extract(golds_zip, workspace / "golds")
        extract(preds_zip, workspace / "preds")
        ignored: list[str] = []
        golds = outputs_by_task(golds_zip, workspace / "golds", ignored)
        predictions = outputs_by_task(preds_zip, workspace / "preds", ignored)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return golds, predictions, ignored


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(make_parser(), argv)
    from eval.scoring import match_files, score_matched

    golds, predictions, ignored = read_zips(args.golds_zip, args.preds_zip, args.temp_dir)
    if not golds:
        raise input_error(args.golds_zip, 'no gold file ({"task", "golds"} JSON) inside')
    extra = sorted(set(predictions) - set(golds))
    if extra:
        raise input_error(args.preds_zip, f"predictions for task(s) without golds: {', '.join(extra)}")
    order = [spec.name for spec in list_tasks()]
    missing = [task for task in order if task in golds and task not in predictions]
    if missing and args.require_all:
        raise input_error(args.preds_zip, f"no predictions for task(s) {', '.join(missing)} (--require_all)")
    if not predictions:
        raise input_error(args.preds_zip, f'no predictions ({{"task", "golds"}} JSON) for any task of the golds '
                                          f'({", ".join(task for task in order if task in golds)}): nothing scored')

    results = {}
    for task in (task for task in order if task in predictions):
        matched = match_files(golds[task], predictions[task], allow_missing=args.allow_missing)
        report, _ = score_matched(matched, workers=args.workers)
        results[task] = {**report, "golds_file": golds[task].source, "predictions_file": predictions[task].source}
    # Files first, then the console: a closed pipe (`| head`) cannot cost the output.
    lines = [format_report(report) for report in results.values()]
    if missing:
        lines.append(f"no predictions for {len(missing)} task(s) with golds: {', '.join(missing)}")
    if ignored:
        lines.append(f"ignored {len(ignored)} JSON file(s) that are not {{\"task\", \"golds\"}} files: "
                     f"{', '.join(ignored)}")
    if args.output_file:
        atomic_write_json(args.output_file, {**results, "missing_tasks": missing, "ignored_files": ignored})
        lines.append(f"results: {args.output_file}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
