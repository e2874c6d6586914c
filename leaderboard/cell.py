"""The contract between the list of method commands (leaderboard.cells) and the runner/reader of the leaderboard."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TaskData:
    """The data of one task every method of the leaderboard uses: the same train split and the same dev users."""
    task: str                      # registry name, e.g. "LaMP_4"
    train_questions: Path
    train_outputs: Path | None     # None when the golds are inside the questions file (LongLaMP rows)
    dev_questions: Path
    dev_outputs: Path | None
    num_users: int | None = None   # the first N dev users (one question each in LaMP); None: all of them


@dataclass(frozen=True)
class Cell:
    """One method on one task: the commands that make its predictions, run in order from the repository root.

    A command whose argv equals another cell's (a shared stage, e.g. the TAM under every OPPU variant) runs once;
    its wall time and peak memory count toward every cell that needs it, so each row shows the method's whole cost.
    """
    method: str                           # row label, unique within a task, e.g. "RAG BM25 top-3"
    task: str
    steps: tuple[tuple[str, ...], ...]    # argv of each command; "python" means the running interpreter
    predictions: Path                     # the LaMP gold-format predictions file the steps write
    run_dirs: tuple[Path, ...] = ()       # folders the steps write; every training.json under them is counted
    baseline: bool = False                # the no-profile cell every other one is compared against
    in_quick: bool = True                 # part of `--quick`
