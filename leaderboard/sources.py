"""Where the leaderboard's data comes from: the embedded sample or a folder in the LaMP / LongLaMP layout.

    task_data("LaMP_4", "sample", out_dir)                       # data/sample/LaMP_4/
    task_data("LaMP_4", "../shared/data/gitlamp", out_dir, 8)    # that folder, its first 8 dev users

A folder holds one task's files (``DIR/<task>/`` is tried first, so one folder can hold several tasks):
LaMP: train_questions.json, train_outputs.json, dev_questions.json, dev_outputs.json;
LongLaMP: train.json, val.json (rows with their golds). The dev split is what every method is scored on.
With ``num_users`` the dev files are cut to the first N users into ``<out_dir>/data/<task>/``, so every
method reads the very same users without each command having to select them its own way.
"""
from __future__ import annotations

from pathlib import Path

from data.cli import REPO_ROOT
from data.errors import InputError, input_error
from data.fingerprint import fingerprint_parts
from data.loaders import load_examples, read_golds, write_lamp_outputs, write_lamp_questions, write_longlamp_records
from data.records import Example
from data.tasks import get_task
from leaderboard.cell import TaskData

SAMPLE = "sample"
SAMPLE_DIR = Path("data") / "sample"      # the leaderboard works from the repository root, as its steps do
# The file names of each benchmark's splits: (train questions, train outputs, dev questions, dev outputs).
LAYOUTS = {
    "LaMP": ("train_questions.json", "train_outputs.json", "dev_questions.json", "dev_outputs.json"),
    "LongLaMP": ("train.json", None, "val.json", None),
}


def repo_path(path: str | Path) -> Path:
    """``path`` (relative to the current folder) as the steps see it from the repository root: relative when
    inside the repository, so commands and ledger keys do not depend on where the checkout lives."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT)
    except ValueError:
        return resolved


def task_folder(task: str, data: str) -> Path:
    """The folder of ``task``'s files: data/sample/<task>, DIR/<task> when it exists, else DIR itself."""
    name = get_task(task).name
    if data == SAMPLE:
        return SAMPLE_DIR / name
    root = Path(data)
    if not root.is_dir():
        raise input_error(root, "no such data folder (--data takes 'sample' or a folder)")
    return root / name if (root / name).is_dir() else root


def task_data(task: str, data: str, out_dir: Path, num_users: int | None = None) -> TaskData:
    """The TaskData of ``task`` from ``data`` ('sample' or a folder), its dev split cut to ``num_users`` users."""
    spec = get_task(task)
    folder = task_folder(spec.name, data)
    paths = [None if name is None else folder / name for name in LAYOUTS[spec.benchmark]]
    missing = [path.name for path in paths if path is not None and not path.is_file()]
    if missing:
        raise input_error(folder, f"no {spec.name} data here: missing {', '.join(missing)} "
                                  f"(a {spec.benchmark} folder holds {', '.join(n for n in LAYOUTS[spec.benchmark] if n)})")
    train_questions, train_outputs, dev_questions, dev_outputs = paths
    for outputs in (train_outputs, dev_outputs):
        if outputs is not None:
            read_golds(outputs, spec.name)    # a LaMP_4 folder given for another task fails here, naming the file
    dev = load_examples(dev_questions, dev_outputs, task=spec.name)
    if not dev:
        raise input_error(dev_questions, "no dev questions")
    data_of = TaskData(task=spec.name, train_questions=train_questions, train_outputs=train_outputs,
                       dev_questions=dev_questions, dev_outputs=dev_outputs, num_users=num_users)
    if num_users is None:
        return data_of
    chosen = first_users(dev, num_users)
    cut = Path(out_dir) / "data" / spec.name
    cut_questions, cut_outputs = cut / dev_questions.name, None if dev_outputs is None else cut / dev_outputs.name
    if spec.benchmark == "LaMP":
        write_lamp_questions(cut_questions, chosen)
        write_lamp_outputs(cut_outputs, spec.name, chosen)
    else:
        write_longlamp_records(cut_questions, chosen, spec.name)
    return TaskData(task=spec.name, train_questions=train_questions, train_outputs=train_outputs,
                    dev_questions=cut_questions, dev_outputs=cut_outputs, num_users=num_users)


def first_users(examples: list[Example], num_users: int) -> list[Example]:
    """The examples of the first ``num_users`` users in file order (a question without a user is its own user)."""
    if num_users < 1:
        raise InputError(f"--num_users must be at least 1, got {num_users}")
    users: set[str] = set()
    chosen = []
    for example in examples:
        user = example.user_id if example.user_id is not None else f"question {example.id}"
        if user not in users:
            if len(users) == num_users:
                continue
            users.add(user)
        chosen.append(example)
    return chosen


def dev_golds(data: TaskData) -> dict[str, str]:
    """{id: gold output} of the dev split, in file order."""
    return {example.id: example.target for example in
            load_examples(data.dev_questions, data.dev_outputs, task=data.task)}


def data_stamp(data: TaskData) -> str:
    """A fingerprint of the task's data files' contents: a step keyed on it reruns when the data changes."""
    files = [data.train_questions, data.train_outputs, data.dev_questions, data.dev_outputs]
    return fingerprint_parts(Path(path).read_bytes() for path in files if path is not None)
