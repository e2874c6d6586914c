"""The leaderboard's runner, reader and outputs on hand-written data and stand-in method commands
(tests/fixtures/leaderboard_fake_method.py: predictions derived from the golds, a counter of its runs)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from data.cli import run
from data.errors import InputError
from leaderboard.cell import Cell, TaskData
from leaderboard.results import compare, score_cell, trainable_parameters
from leaderboard.run import main
from leaderboard.sources import task_data

FAKE = "tests/fixtures/leaderboard_fake_method.py"
HEADLINES = ["Markets rally after rate cut", "New telescope finds distant galaxy", "Local team wins the cup",
             "City plans a larger park", "Storm closes mountain roads", "Chef opens a floating restaurant"]


def write_lamp4(folder: Path, users: int = 6) -> Path:
    """A LaMP_4 folder written by hand: one question per user, two profile items each."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        questions = [{"id": f"{split}{i}", "input": f"Generate a headline for the following article: story {i} "
                                                   f"about {HEADLINES[i % 6].lower()}",
                      "profile": [{"id": f"{split}{i}-a", "title": "Old news", "text": "an older story"},
                                  {"id": f"{split}{i}-b", "title": "Other news", "text": "another story"}]}
                     for i in range(users)]
        golds = {"task": "LaMP_4", "golds": [{"id": f"{split}{i}", "output": HEADLINES[i % 6]} for i in range(users)]}
        (folder / f"{split}_questions.json").write_text(json.dumps(questions))
        (folder / f"{split}_outputs.json").write_text(json.dumps(golds))
    return folder


def fake_step(data: TaskData, out: Path, mode: str, counter: str | None = None, *extra: str) -> tuple[str, ...]:
    step = ("python", FAKE, "--golds", str(data.dev_outputs), "--out", str(out), "--mode", mode)
    return step + (("--counter", counter) if counter else ()) + extra


def fake_cells(modes: dict[str, str], counters: Path, shared: bool = False):
    """method_cells for the stand-in method: one cell per (name, mode); the first is the baseline. With
    ``shared`` every cell first runs the same preparation step (counted in counters/shared)."""
    def method_cells(data: TaskData, model: str, out_dir: Path, quick: bool) -> list[Cell]:
        cells = []
        for position, (name, mode) in enumerate(modes.items()):
            slug = name.replace(" ", "_")
            predictions = out_dir / slug / "predictions.json"
            steps = [fake_step(data, out_dir / slug / "own.json", "gold", str(counters / f"{slug}.count"))] \
                if not shared else [fake_step(data, out_dir / "prepared.json", "gold", str(counters / "shared"))]
            steps.append(fake_step(data, predictions, mode, None, "--run_dir", str(out_dir / slug / "train"),
                                   "--trainable", str(100 * position)))
            cells.append(Cell(method=name, task=data.task, steps=tuple(steps), predictions=predictions,
                              run_dirs=(out_dir / slug,), baseline=position == 0, in_quick=mode != "drop_one"))
        return cells
    return method_cells


@pytest.fixture(autouse=True)
def from_the_repository(monkeypatch):
    """The leaderboard works from the repository root (it changes there); undo that after each test."""
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)


@pytest.fixture
def lamp4(tmp_path) -> Path:
    return write_lamp4(tmp_path / "gitlike")


def leaderboard(tmp_path, lamp4, method_cells, *flags) -> int:
    return run(lambda argv: main(argv, method_cells=method_cells),
               ["--task", "LaMP_4", "--data", str(lamp4), "--out", str(tmp_path / "lb"), *flags])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


MODES = {"no profile": "first_word", "perfect": "gold", "same as baseline": "first_word"}


def test_outputs_scores_intervals_and_costs(tmp_path, lamp4):
    assert leaderboard(tmp_path, lamp4, fake_cells(MODES, tmp_path)) == 0
    out = tmp_path / "lb"
    rows = read_csv(out / "leaderboard.csv")
    assert len(rows) == 3 * 2                                # methods x metrics (rouge-1, rouge-L)
    by = {(row["method"], row["metric"]): row for row in rows}
    perfect = by[("perfect", "rouge-1")]
    assert float(perfect["value"]) == pytest.approx(1.0)
    assert float(perfect["low"]) > 0                          # better on every example: the interval is above 0
    assert float(perfect["trainable_parameters"]) == 100
    same = by[("same as baseline", "rouge-L")]
    assert (float(same["delta"]), float(same["low"]), float(same["high"])) == (0.0, 0.0, 0.0)
    assert float(by[("no profile", "rouge-1")]["value"]) == pytest.approx(float(same["value"]))
    assert float(perfect["wall_seconds"]) > 0 and float(perfect["peak_mb"]) > 1
    assert {row["status"] for row in rows} == {"done"}
    md = (out / "leaderboard.md").read_text()
    assert "## LaMP_4" in md and "| method | n | rouge-1 | Δ rouge-1 [95%] |" in md
    assert "| perfect | 6 | 1.0000 | +" in md and "| no profile | 6 |" in md and "baseline" in md
    assert "- model: default" in md and "- git commit:" in md and str(lamp4) in md
    assert (out / "LaMP_4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["args"]["task"] == ["LaMP_4"]
    assert list((out / "logs").glob("*.stderr.log")) and list((out / "logs").glob("*.stdout.log"))


def test_rerun_reuses_finished_steps(tmp_path, lamp4):
    cells = fake_cells({"no profile": "first_word", "perfect": "gold"}, tmp_path)
    assert leaderboard(tmp_path, lamp4, cells) == 0
    first = read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert leaderboard(tmp_path, lamp4, cells) == 0
    assert (tmp_path / "perfect.count").read_text() == "ran\n"          # not run again
    second = read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert [row["wall_seconds"] for row in second] == [row["wall_seconds"] for row in first]   # recorded cost
    (tmp_path / "lb" / "LaMP_4" / "perfect" / "predictions.json").unlink()   # a lost output: its cell reruns
    assert leaderboard(tmp_path, lamp4, cells) == 0
    assert (tmp_path / "perfect.count").read_text() == "ran\nran\n"
    assert (tmp_path / "no_profile.count").read_text() == "ran\n"


def test_a_changed_earlier_step_reruns_the_later_ones(tmp_path, lamp4):
    def cells_with(first_mode):
        def method_cells(data, model, out_dir, quick):
            predictions = out_dir / "p.json"
            steps = (fake_step(data, out_dir / "stage.json", first_mode, str(tmp_path / "stage")),
                     fake_step(data, predictions, "gold", str(tmp_path / "final")))
            return [Cell("no profile", data.task, steps, predictions, baseline=True)]
        return method_cells

    assert leaderboard(tmp_path, lamp4, cells_with("gold")) == 0
    assert leaderboard(tmp_path, lamp4, cells_with("gold")) == 0
    assert (tmp_path / "final").read_text() == "ran\n"
    assert leaderboard(tmp_path, lamp4, cells_with("first_word")) == 0    # the same final argv, after another stage
    assert (tmp_path / "stage").read_text() == (tmp_path / "final").read_text() == "ran\nran\n"


def test_a_failed_cell_is_reported_and_the_others_finish(tmp_path, lamp4, capsys):
    modes = {"no profile": "first_word", "broken": "fail", "perfect": "gold"}
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path)) == 0
    rows = {row["method"]: row for row in read_csv(tmp_path / "lb" / "leaderboard.csv")}
    assert rows["broken"]["status"] == "failed" and rows["broken"]["value"] == ""
    assert "exited with 1: error: boom in the fake method" in rows["broken"]["reason"]
    assert rows["perfect"]["status"] == "done" and float(rows["perfect"]["value"]) == pytest.approx(1.0)
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| broken | - |" in md and "failed: step 2/2 `leaderboard_fake_method.py` exited with 1" in md
    ledger = json.loads((tmp_path / "lb" / "ledger.json").read_text())["steps"]
    failed = [step for step in ledger.values() if step["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["stderr_tail"][-1] == "error: boom in the fake method"
    assert "logs:" in capsys.readouterr().out


def test_a_shared_step_runs_once_and_counts_for_every_cell(tmp_path, lamp4):
    modes = {"no profile": "first_word", "perfect": "gold", "also perfect": "gold"}
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path, shared=True)) == 0
    assert (tmp_path / "shared").read_text() == "ran\n"
    ledger = json.loads((tmp_path / "lb" / "ledger.json").read_text())["steps"]
    assert len(ledger) == 4                              # the shared step and each cell's own

    rows = {row["method"]: row for row in read_csv(tmp_path / "lb" / "leaderboard.csv")}
    shared = next(step for step in ledger.values() if any(a.endswith("prepared.json") for a in step["argv"]))
    assert all(float(row["wall_seconds"]) >= shared["wall_seconds"] for row in rows.values())


def test_a_failed_shared_step_fails_only_the_cells_that_need_it(tmp_path, lamp4, lamp4_data=None):
    counters = tmp_path

    def method_cells(data, model, out_dir, quick):
        broken = fake_step(data, out_dir / "x.json", "fail", str(counters / "broken"))
        def cell(name, mode, steps=(), baseline=False):
            predictions = out_dir / name / "predictions.json"
            return Cell(name, data.task, (*steps, fake_step(data, predictions, mode)), predictions,
                        baseline=baseline)
        return [cell("no profile", "first_word", baseline=True), cell("a", "gold", [broken]),
                cell("b", "gold", [broken]), cell("c", "gold")]

    assert leaderboard(tmp_path, lamp4, method_cells) == 0
    assert (counters / "broken").read_text() == "ran\n"
    rows = {row["method"]: row["status"] for row in read_csv(tmp_path / "lb" / "leaderboard.csv")}
    assert rows == {"no profile": "done", "a": "failed", "b": "failed", "c": "done"}


def test_peak_memory_covers_the_step_process_tree_and_only_it(tmp_path, lamp4):
    def method_cells(data, model, out_dir, quick):
        big, small = out_dir / "big.json", out_dir / "small.json"
        return [Cell("no profile", data.task, (fake_step(data, big, "gold", None, "--allocate_mb", "150"),),
                     big, baseline=True),
                Cell("small", data.task, (fake_step(data, small, "gold"),), small)]

    assert leaderboard(tmp_path, lamp4, method_cells) == 0
    peaks = {row["method"]: float(row["peak_mb"]) for row in read_csv(tmp_path / "lb" / "leaderboard.csv")}
    assert peaks["no profile"] >= 150                 # allocated in a grandchild of the step
    assert peaks["small"] < 100                       # not the size of the process that started it (pytest)


def test_ids_that_differ_from_the_golds_or_the_baseline_are_an_error(tmp_path, lamp4):
    modes = {"no profile": "first_word", "partial": "drop_one", "perfect": "gold"}
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path)) == 0
    rows = {row["method"]: row for row in read_csv(tmp_path / "lb" / "leaderboard.csv")}
    assert rows["partial"]["status"] == "failed" and "no prediction for 1 of 6 gold id(s)" in rows["partial"]["reason"]
    assert rows["perfect"]["status"] == "done"

    golds = {"a": "one two", "b": "three four"}
    base = _scored(tmp_path, "base", golds, golds)
    other = _scored(tmp_path, "other", {"a": "one two", "c": "five"}, {"a": "one", "c": "five"})
    with pytest.raises(InputError, match="ids differ from the baseline's"):
        compare("LaMP_4", base, other)


def _scored(tmp_path, name, golds, predictions):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"task": "LaMP_4", "golds": [{"id": k, "output": v} for k, v in predictions.items()]}))
    return score_cell("LaMP_4", path, golds, "golds.json")


def test_paired_interval_known_answers(tmp_path):
    golds = {f"q{i}": f"word{i} other{i} third{i}" for i in range(12)}
    baseline = _scored(tmp_path, "base", golds, {k: v.split()[0] for k, v in golds.items()})
    same = _scored(tmp_path, "same", golds, {k: v.split()[0] for k, v in golds.items()})
    better = _scored(tmp_path, "better", golds, {k: " ".join(v.split()[:2]) for k, v in golds.items()})
    for metric, result in compare("LaMP_4", baseline, same).items():
        assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    result = compare("LaMP_4", baseline, better)["rouge-1"]
    assert result.low > 0 and result.difference == pytest.approx(0.8 - 0.5)
    assert np.isclose(result.baseline, 0.5) and np.isclose(result.candidate, 0.8)


def test_trainable_parameters_are_summed_over_training_files(tmp_path):
    (tmp_path / "run" / "users" / "u1").mkdir(parents=True)
    (tmp_path / "run" / "users" / "u2").mkdir(parents=True)
    (tmp_path / "tam").mkdir()
    (tmp_path / "run" / "users" / "u1" / "training.json").write_text('{"trainable_parameters": 1000}')
    (tmp_path / "run" / "users" / "u2" / "training.json").write_text('{"trainable_parameters": 1000, "epochs": 2}')
    (tmp_path / "tam" / "training.json").write_text('{"trainable_parameters": 500}')
    assert trainable_parameters([tmp_path / "run", tmp_path / "tam"]) == 2500
    assert trainable_parameters([tmp_path / "run", tmp_path / "run" / "users"]) == 2000    # each file once
    assert trainable_parameters([tmp_path / "nothing here"]) == 0
    (tmp_path / "tam" / "training.json").write_text('{"trainable": 500}')
    with pytest.raises(InputError, match="tam/training.json: field 'trainable_parameters'"):
        trainable_parameters([tmp_path / "tam"])


def test_list_quick_and_methods(tmp_path, lamp4, capsys):
    modes = {"no profile": "first_word", "slow": "drop_one", "perfect": "gold"}
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path), "--list") == 0
    listed = capsys.readouterr().out
    assert "no profile (baseline) ->" in listed and "slow ->" in listed and f"python {FAKE} --golds" in listed
    assert not (tmp_path / "lb" / "ledger.json").exists() and not list(tmp_path.glob("*.count"))
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path), "--quick") == 0
    assert [row["method"] for row in read_csv(tmp_path / "lb" / "leaderboard.csv")][::2] == ["no profile", "perfect"]
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path), "--methods", "slow") == 0
    assert [row["method"] for row in read_csv(tmp_path / "lb" / "leaderboard.csv")][::2] == ["no profile", "slow"]
    assert leaderboard(tmp_path, lamp4, fake_cells(modes, tmp_path), "--methods", "nope") == 2
    assert "--methods: no cell named ['nope']" in capsys.readouterr().err


def test_num_users_keeps_the_first_dev_users(tmp_path, lamp4):
    data = task_data("LaMP_4", str(lamp4), tmp_path / "out", num_users=2)
    assert data.dev_questions == tmp_path / "out" / "data" / "LaMP_4" / "dev_questions.json"
    assert [q["id"] for q in json.loads(data.dev_questions.read_text())] == ["dev0", "dev1"]
    assert [g["id"] for g in json.loads(data.dev_outputs.read_text())["golds"]] == ["dev0", "dev1"]
    assert data.train_questions == lamp4 / "train_questions.json"
    whole = task_data("LaMP_4", str(lamp4), tmp_path / "out")
    assert whole.dev_questions == lamp4 / "dev_questions.json" and whole.num_users is None


def test_longlamp_sample_layout(tmp_path):
    data = task_data("LongLaMP_2", "sample", tmp_path, num_users=3)
    rows = json.loads(data.dev_questions.read_text())
    assert data.dev_outputs is None and data.train_outputs is None and len(rows) == 3
    assert data.train_questions.name == "train.json" and rows[0]["output"]


@pytest.mark.parametrize("flags, message", [
    (["--data", "{tmp}/absent"], "absent: no such data folder"),
    (["--data", "{tmp}/gitlike", "--task", "LaMP_1"], "gitlike/train_outputs.json: field 'task': is LaMP_4"),
    (["--data", "{tmp}/gitlike", "--task", "LongLaMP_2"], "no LongLaMP_2 data here: missing train.json, val.json"),
    (["--data", "{tmp}/partial"], "partial: no LaMP_4 data here: missing dev_outputs.json"),
    (["--data", "{tmp}/gitlike", "--num_users", "0"], "--num_users must be at least 1"),
])
def test_data_source_errors(tmp_path, lamp4, capsys, flags, message):
    write_lamp4(tmp_path / "partial")
    (tmp_path / "partial" / "dev_outputs.json").unlink()
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in flags]
    code = run(lambda argv: main(argv, method_cells=fake_cells(MODES, tmp_path)),
               ["--task", "LaMP_4", *flags, "--out", str(tmp_path / "lb")] if "--task" not in flags
               else [*flags, "--out", str(tmp_path / "lb")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "lb" / "leaderboard.md").exists()


def test_a_lamp4_folder_given_for_another_lamp_task_names_the_file(tmp_path, lamp4):
    for name in ("train_questions.json", "train_outputs.json", "dev_questions.json", "dev_outputs.json"):
        (lamp4 / "LaMP_3").mkdir(exist_ok=True)
        (lamp4 / "LaMP_3" / name).write_text((lamp4 / name).read_text())
    with pytest.raises(InputError, match="LaMP_3/train_outputs.json"):
        task_data("LaMP_3", str(lamp4), tmp_path / "out")


def test_the_cell_list_gets_the_data_model_folder_and_quick_flag(tmp_path, lamp4):
    calls = []
    cells = fake_cells(MODES, tmp_path)

    def method_cells(data, model, out_dir, quick):
        calls.append((data.task, data.num_users, model, out_dir, quick))
        return cells(data, model, out_dir, quick)

    assert leaderboard(tmp_path, lamp4, method_cells, "--model", "some/model", "--quick", "--num_users", "3",
                       "--list") == 0
    assert calls == [("LaMP_4", 3, "some/model", tmp_path / "lb" / "LaMP_4", True)]
