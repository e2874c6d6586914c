"""Run the cells' commands once each, measuring their cost, and remember finished ones across runs.

Every distinct command (argv, plus the fingerprint of its task's data) is a step; it runs at most once per
leaderboard run, however many cells list it, from the repository root, its stdout and stderr going to
``<out>/logs/<name>-<key>.{stdout,stderr}.log``. The ledger ``<out>/ledger.json`` (rewritten atomically after
each step) keeps per step: argv, status, exit code, wall time, peak memory and the tail of its stderr, keyed by
the step and the steps before it in its cell. A rerun skips a step the ledger says finished after the same
earlier steps (its recorded cost still counts) unless the predictions of the cell that needs it are missing.
A failed step fails the cells that need it, with a one-line reason; the other cells still run.

Each step runs under ``leaderboard.measure``, a small wrapper process that measures the peak memory of the
step's whole process tree (see there why a wrapper) and its wall time.
"""
from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from data.cli import REPO_ROOT
from data.fingerprint import fingerprint
from data.io import atomic_write_json, read_json
from leaderboard.cell import Cell

LEDGER_FILE = "ledger.json"
LOGS_DIR = "logs"
STDERR_TAIL_LINES = 20
# What the repository's scripts export (scripts/demo.sh): offline, quiet tokenizers, sleeping OpenMP threads.
STEP_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "OMP_WAIT_POLICY": "PASSIVE"}
DONE, FAILED = "done", "failed"


@dataclass
class CellRun:
    """What running a cell gave: its status, the reason when it failed and the records of its steps."""
    cell: Cell
    status: str = DONE
    reason: str = ""
    steps: list[dict] = field(default_factory=list)

    @property
    def wall_seconds(self) -> float:
        return sum(step["wall_seconds"] for step in self.steps)

    @property
    def peak_mb(self) -> float | None:
        return max((step["peak_mb"] for step in self.steps), default=None)


def step_key(argv: Sequence[str], data_stamp: str = "") -> str:
    return fingerprint({"argv": list(argv), "data": data_stamp})


def command_text(argv: Sequence[str]) -> str:
    return " ".join(argv)


def step_name(argv: Sequence[str]) -> str:
    """A readable file-name part for a command: the module of `python -m M`, else the program's name."""
    if "-m" in argv[:-1]:
        name = argv[argv.index("-m") + 1]
    elif argv[0] == "python" and len(argv) > 1 and not argv[1].startswith("-"):
        name = Path(argv[1]).name
    else:
        name = Path(argv[0]).name
    return re.sub(r"[^\w.-]", "_", name)[:40]


class Ledger:
    """The finished and failed steps of earlier runs, by key, in ``<out>/ledger.json``."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LEDGER_FILE
        self.steps: dict[str, dict] = read_json(self.path)["steps"] if self.path.is_file() else {}

    def record(self, key: str, entry: dict) -> None:
        self.steps[key] = entry
        atomic_write_json(self.path, {"steps": self.steps})


def execute(argv: Sequence[str], stdout_log: Path, stderr_log: Path) -> dict:
    """Run one command from the repository root through leaderboard.measure; its exit code, wall time, peak
    memory and stderr tail."""
    command = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    environment = {**STEP_ENVIRONMENT, **os.environ}
    stdout_log.parent.mkdir(parents=True, exist_ok=True)
    result_file = stdout_log.with_name(stdout_log.name.replace(".stdout.log", ".cost.json"))
    result_file.unlink(missing_ok=True)
    with open(stdout_log, "wb") as out, open(stderr_log, "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "leaderboard.measure", str(result_file), "--", *command],
                                   cwd=REPO_ROOT, stdout=out, stderr=err, env=environment)
        try:
            returncode = process.wait()
        except KeyboardInterrupt:
            process.wait()
            raise
    measured = read_json(result_file) if result_file.is_file() else {
        "returncode": returncode, "wall_seconds": 0.0, "peak_mb": 0.0}   # the wrapper itself was killed
    result_file.unlink(missing_ok=True)
    return {**measured, "stderr_tail": _tail(stderr_log)}


def _tail(path: Path) -> list[str]:
    """The last lines of a log; progress bars' carriage-return redraws count as lines, blank ones are dropped."""
    text = path.read_bytes()[-20000:].decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n")]
    return [line for line in lines if line][-STDERR_TAIL_LINES:]


def failure_reason(argv: Sequence[str], record: dict) -> str:
    last = record["stderr_tail"][-1] if record["stderr_tail"] else "no output on stderr"
    return f"`{step_name(argv)}` exited with {record['returncode']}: {last}"


def run_cells(cells: Sequence[Cell], out_dir: Path, data_stamps: dict[str, str] | None = None) -> list[CellRun]:
    """Run every cell's steps in order (each distinct step once), reusing the ledger's finished steps."""
    out_dir = Path(out_dir)
    data_stamps = data_stamps or {}
    ledger = Ledger(out_dir)
    this_run: dict[str, dict] = {}          # steps handled in this run (ran, reused or failed), by command key
    keys_of = {id(cell): [step_key(argv, data_stamps.get(cell.task, "")) for argv in cell.steps] for cell in cells}
    total = len({key for keys in keys_of.values() for key in keys})
    results = []
    with tqdm(total=total, desc="leaderboard steps", unit="step") as bar:
        for cell in cells:
            result = CellRun(cell)
            results.append(result)
            chain = ""
            for number, (argv, key) in enumerate(zip(cell.steps, keys_of[id(cell)]), 1):
                where = f"[{cell.task}] {cell.method}, step {number}/{len(cell.steps)}"
                # The ledger knows a step by its command AND the commands before it in the cell: when an earlier
                # step's flags change, every later one reruns (its own argv may not show what it reads).
                chain = fingerprint({"step": key, "after": chain})
                record = this_run.get(key)
                if record is None:
                    earlier = ledger.steps.get(chain)
                    if earlier and earlier["status"] == DONE and Path(cell.predictions).is_file():
                        record = {**earlier, "reused": True}
                        tqdm.write(f"{where}: reused, finished earlier ({earlier['wall_seconds']:.1f} s, "
                                   f"{earlier['peak_mb']:.0f} MB): {command_text(argv)}")
                    else:
                        record = _run_step(argv, key, out_dir, where)
                    this_run[key] = record
                    bar.update(1)
                if ledger.steps.get(chain, {}).get("finished_at") != record["finished_at"]:
                    ledger.record(chain, {name: value for name, value in record.items() if name != "reused"})
                result.steps.append(record)
                if record["status"] == FAILED:
                    result.status, result.reason = FAILED, f"step {number}/{len(cell.steps)} {failure_reason(argv, record)}"
                    break
            if result.status == DONE and not Path(cell.predictions).is_file():
                result.status, result.reason = FAILED, f"its steps finished but wrote no {cell.predictions}"
    return results


def _run_step(argv: Sequence[str], key: str, out_dir: Path, where: str) -> dict:
    base = out_dir / LOGS_DIR / f"{step_name(argv)}-{key[:10]}"
    stdout_log, stderr_log = base.with_name(base.name + ".stdout.log"), base.with_name(base.name + ".stderr.log")
    tqdm.write(f"{where}: {command_text(argv)}\n    logs: {stdout_log}, {stderr_log}")
    measured = execute(argv, stdout_log, stderr_log)
    status = DONE if measured["returncode"] == 0 else FAILED
    record = {"argv": list(argv), "status": status, **measured, "stdout_log": str(stdout_log),
              "stderr_log": str(stderr_log), "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds")}
    outcome = "done" if status == DONE else f"FAILED ({failure_reason(argv, record)})"
    tqdm.write(f"    {outcome} in {record['wall_seconds']:.1f} s, peak {record['peak_mb']:.0f} MB")
    return record
