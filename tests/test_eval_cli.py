"""eval.eval_task / eval.eval_all / scripts: run as users run them (subprocess, sys.executable)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from eval.scoring import metric_values

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def eval_task(*args: str) -> subprocess.CompletedProcess:
    return run_cli("-m", "eval.eval_task", *args)


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def outputs(task: str, pairs) -> dict:
    return {"task": task, "golds": [{"id": record_id, "output": output} for record_id, output in pairs]}


@pytest.fixture(scope="module")
def gitlamp_golds(shared_data) -> Path:
    return shared_data / "gitlamp" / "dev_outputs.json"


def test_gitlamp_dev_scored_against_itself_is_perfect_as_a_script(gitlamp_golds, tmp_path):
    report_path = tmp_path / "report.json"
    done = run_cli("eval/eval_task.py", "--golds_json", str(gitlamp_golds), "--preds_json", str(gitlamp_golds),
                   "--task_name", "LaMP_4", "--output_file", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert list(report)[:2] == ["rouge-1", "rouge-L"]       # the official scorer's shape: metrics on top
    assert metric_values(report) == {"rouge-1": 1.0, "rouge-L": 1.0}
    assert report["task"] == "LaMP_4" and report["num_examples"] == 32
    assert "rouge-1" in done.stdout and str(report_path) in done.stdout


def shuffled_copy(golds_path: Path, destination: Path) -> Path:
    """The same ids with each output moved to the next id (a deterministic derangement)."""
    data = json.loads(golds_path.read_text())
    texts = [entry["output"] for entry in data["golds"]]
    pairs = [(entry["id"], texts[(i + 1) % len(texts)]) for i, entry in enumerate(data["golds"])]
    return write(destination, outputs("LaMP-4", pairs))  # the alias must match LaMP_4


def test_shuffled_outputs_score_lower_and_the_bootstrap_sees_it(gitlamp_golds, tmp_path):
    shuffled = shuffled_copy(gitlamp_golds, tmp_path / "shuffled.json")
    report_path = tmp_path / "compare.json"
    done = eval_task("--golds_json", str(gitlamp_golds), "--preds_json", str(shuffled), "--task", "lamp4",
                     "--compare", str(gitlamp_golds), "--bootstrap_samples", "300", "--output_file", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["rouge-1"] < 0.5 and report["rouge-L"] < 0.5
    for name in ("rouge-1", "rouge-L"):
        result = report["comparison"]["metrics"][name]
        assert result["candidate"] == 1.0
        assert 0 < result["low"] <= result["difference"] <= result["high"]
        assert result["excludes_zero"] and result["p_not_better"] == 0.0
    assert "excludes 0" in done.stdout


def test_per_example_scores_by_id_and_metric_override(tmp_path):
    golds = write(tmp_path / "golds.json", outputs("LaMP_5", [("a", "neural text generation"), ("b", "graphs")]))
    preds = write(tmp_path / "preds.json", outputs("LaMP_5", [("b", "graphs"), ("a", "neural generation")]))
    per_example = tmp_path / "per_example.json"
    done = eval_task("--golds_json", str(golds), "--preds_json", str(preds), "--metrics", "rouge-1", "bleu",
                     "--per_example", str(per_example), "--output_file", str(tmp_path / "report.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(metric_values(report)) == ["rouge-1", "bleu"]
    scores = json.loads(per_example.read_text())
    assert scores["metrics"] == ["rouge-1"]  # bleu is corpus-level
    assert scores["scores"]["b"] == {"rouge-1": 1.0}
    assert scores["scores"]["a"]["rouge-1"] == pytest.approx(0.8)


def test_allow_missing_scores_absent_ids_as_empty_and_counts_them(tmp_path):
    golds = write(tmp_path / "golds.json", outputs("LaMP_3", [("a", "1"), ("b", "2"), ("c", "3")]))
    preds = write(tmp_path / "preds.json", outputs("LaMP_3", [("a", "1"), ("b", " ")]))
    done = eval_task("--golds_json", str(golds), "--preds_json", str(preds), "--allow_missing",
                     "--output_file", str(tmp_path / "report.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["missing_predictions"], report["empty_predictions"]) == (1, 1)
    assert report["MAE"] == pytest.approx((0 + 3 + 2) / 3)  # "" -> farther rating: 5 for 2 and 3
    assert "1 without a prediction, 1 empty" in done.stdout


@pytest.mark.parametrize("task,pairs,predicted,expected", [
    # A wrong label: accuracy 1/2, and macro-F1 over LaMP_1's two labels is (1 + 0) / 2.
    ("LaMP_1", [("a", "[1]"), ("b", "[2]")], [("a", "[1]"), ("b", "")], {"accuracy": 0.5, "f1": 0.5}),
    # The worst rating: 5 for a gold of 1 and of 3 (the official tie rule), 1 for a gold of 5.
    ("LaMP_3", [("a", "1"), ("b", "3"), ("c", "5")], [("a", ""), ("b", " "), ("c", "")],
     {"MAE": (4 + 2 + 4) / 3, "RMSE": ((16 + 4 + 16) / 3) ** 0.5}),
    # ROUGE 0 for the empty headline, 1 for the exact one.
    ("LaMP_4", [("a", "stocks rally"), ("b", "bridge opens")], [("a", "stocks rally"), ("b", "")],
     {"rouge-1": 0.5, "rouge-L": 0.5}),
])
def test_empty_predictions_are_valid_outputs_scored_like_the_official_scorer(task, pairs, predicted, expected,
                                                                           tmp_path):
    golds = write(tmp_path / "golds.json", outputs(task, pairs))
    preds = write(tmp_path / "preds.json", outputs(task, predicted))
    done = eval_task("--golds_json", str(golds), "--preds_json", str(preds), "--output_file",
                     str(tmp_path / "report.json"))                  # no --allow_missing: the ids are there
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert metric_values(report) == pytest.approx(expected)
    empty = sum(not text.strip() for _, text in predicted)
    assert (report["empty_predictions"], report["missing_predictions"]) == (empty, 0)
    assert f"{empty} empty" in done.stdout


def test_cope_command_adds_the_report_into_the_predictions_file_and_runs_twice(tmp_path):
    """CoPe: eval_task.py --task news_headline ... --task_name LaMP_4 --output_file <the predictions file>."""
    golds = write(tmp_path / "golds.json", outputs("LaMP_4", [("a", "stocks rally"), ("b", "bridge opens")]))
    predictions = {**outputs("LaMP_4", [("a", "stocks rally today"), ("b", "")]), "model": "OPPU"}
    preds = write(tmp_path / "OPPU.json", predictions)
    command = ["eval/eval_task.py", "--task", "news_headline", "--golds_json", str(golds), "--preds_json",
               str(preds), "--task_name", "LaMP_4", "--output_file", str(preds)]
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr
    after_first = json.loads(preds.read_text())
    assert {key: after_first[key] for key in predictions} == predictions     # the predictions survive
    assert after_first["rouge-1"] == pytest.approx((0.8 + 0) / 2) and after_first["empty_predictions"] == 1
    second = run_cli(*command)                                  # reads the file that now holds the report
    assert second.returncode == 0, second.stderr
    assert json.loads(preds.read_text()) == after_first
    # A rerun with other metrics leaves no metric of the earlier report behind.
    third = run_cli(*command, "--metrics", "rouge-2")
    assert third.returncode == 0, third.stderr
    assert metric_values(json.loads(preds.read_text())) == {"rouge-2": pytest.approx((2 / 3 + 0) / 2)}


@pytest.mark.parametrize("reader", ["head -1", "true"])   # true: the reader is gone before the first write
def test_a_closed_pipe_ends_quietly_after_writing_the_outputs(reader, tmp_path):
    golds = write(tmp_path / "golds.json", outputs("LaMP_4", [("a", "stocks rally"), ("b", "bridge opens")]))
    report = tmp_path / "report.json"
    done = subprocess.run(f"{sys.executable} -m eval.eval_task --golds_json {golds} --preds_json {golds} "
                          f"--output_file {report} | {reader}", shell=True, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.stderr == ""
    assert done.stdout == ("LaMP_4: 2 examples\n" if reader == "head -1" else "")
    assert json.loads(report.read_text())["rouge-1"] == 1.0


GOLDS = outputs("LaMP_4", [("q1", "first headline"), ("q2", "second headline")])
BAD_INPUTS = {
    "missing id": (GOLDS, outputs("LaMP_4", [("q1", "x")]), [], "no prediction for 1 of 2"),
    "extra id": (GOLDS, outputs("LaMP_4", [("q1", "x"), ("q2", "y"), ("q9", "z")]), [], "'q9'"),
    "duplicate prediction id": (GOLDS, outputs("LaMP_4", [("q1", "x"), ("q1", "y"), ("q2", "z")]), [],
                                "record 'q1': duplicate id"),
    "duplicate gold id": (outputs("LaMP_4", [("q1", "a"), ("q1", "b")]), GOLDS, [], "duplicate id"),
    "task of the files differ": (GOLDS, outputs("LaMP_5", [("q1", "x"), ("q2", "y")]), [],
                                 "task LaMP_5 does not match LaMP_4"),
    "task flag differs": (GOLDS, GOLDS, ["--task_name", "LaMP-7"], "does not match the requested task LaMP_7"),
    "non-string prediction": (GOLDS, outputs("LaMP_4", [("q1", 3), ("q2", "y")]), [], "got int"),
    "empty gold": (outputs("LaMP_4", [("q1", " "), ("q2", "b")]), GOLDS, [], "empty gold output"),
    "gold not a label": (outputs("LaMP_1", [("q1", "[3]")]), outputs("LaMP_1", [("q1", "[1]")]), [],
                         "not a LaMP_1 label"),
    "malformed JSON": (GOLDS, '{"task": "LaMP_4", "golds": [', [], "malformed JSON"),
    "wrong structure": (GOLDS, [{"id": "q1", "output": "x"}], [], 'expected {"task"'),
    "unknown task in file": (GOLDS, outputs("LaMP_9", [("q1", "x")]), [], "unknown task 'LaMP_9'"),
    "missing file": (GOLDS, None, [], "file not found"),
    "unknown metric": (GOLDS, GOLDS, ["--metrics", "rouge"], "unknown metric 'rouge'"),
    "corpus-level per-example": (GOLDS, GOLDS, ["--metrics", "bleu", "--per_example", "pe.json"], "corpus-level"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_code_2_and_writes_nothing(case, tmp_path):
    golds, predictions, extra, message = BAD_INPUTS[case]
    golds_path = write(tmp_path / "golds.json", golds)
    preds_path = tmp_path / "preds.json"
    if predictions is not None:
        write(preds_path, predictions)
    output = tmp_path / "report.json"
    extra = [str(tmp_path / arg) if arg.endswith(".json") else arg for arg in extra]
    done = eval_task("--golds_json", str(golds_path), "--preds_json", str(preds_path),
                     "--output_file", str(output), *extra)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr
    assert not output.exists() and not (tmp_path / "pe.json").exists()


# Each writer with its output flags, and inputs that do not exist: the output must be refused first.
MISSING_INPUTS = ("no_golds", "no_preds", "no_runs")
WRITERS = {
    "eval_task": (["eval/eval_task.py", "--golds_json", "no_golds.json", "--preds_json", "no_preds.json"],
                  ["--output_file", "--per_example"]),
    "eval_all": (["eval/eval_all.py", "--golds_zip", "no_golds.zip", "--preds_zip", "no_preds.zip"],
                 ["--output_file"]),
    "report": (["eval/report.py", "no_runs"], ["--output"]),
}


@pytest.mark.parametrize("writer,flag", [(writer, flag) for writer, (_, flags) in WRITERS.items() for flag in flags])
@pytest.mark.parametrize("target", ["existing folder", "under a regular file"])
def test_unwritable_output_paths_are_refused_before_any_work(writer, flag, target, tmp_path):
    command, _ = WRITERS[writer]
    write(tmp_path / "a_file.txt", "x")
    output = {"existing folder": tmp_path, "under a regular file": tmp_path / "a_file.txt" / "out.json"}[target]
    done = run_cli(*command, flag, str(output))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(output) in done.stderr and not any(name in done.stderr for name in MISSING_INPUTS)
    assert (tmp_path / "a_file.txt").read_text() == "x"


def test_output_in_a_read_only_folder_is_refused_before_any_work(tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    command = [sys.executable, "eval/eval_task.py", "--golds_json", "no_golds.json", "--preds_json",
               "no_preds.json", "--output_file", str(read_only / "report.json")]
    if os.geteuid() == 0:  # root writes through permission bits: make the folder a read-only mount instead
        if not shutil.which("unshare"):
            pytest.skip("needs unshare to mount a read-only folder as root")
        mount = f"mount -t tmpfs -o ro tmpfs {read_only} || exit 99; exec " + " ".join(command)
        done = subprocess.run(["unshare", "-m", "sh", "-c", mount], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=300)
        if done.returncode == 99:
            pytest.skip(f"cannot mount a read-only folder here: {done.stderr.strip()}")
    else:
        read_only.chmod(0o555)
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot write in" in done.stderr and str(read_only) in done.stderr
    assert not any(name in done.stderr for name in MISSING_INPUTS)


def make_zip(path: Path, files: dict[str, object]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, json.dumps(content))
    return path


@pytest.fixture
def zips(tmp_path):
    golds = make_zip(tmp_path / "golds.zip", {
        "LaMP_1/dev_outputs.json": outputs("LaMP_1", [("a", "[1]"), ("b", "[2]")]),
        "deep/er/ratings.json": outputs("LaMP-3", [("a", "3"), ("b", "4")]),
        "headlines.json": outputs("LaMP_4", [("a", "a headline")]),
        "dev_questions.json": [{"id": "a", "input": "not an outputs file", "profile": []}],
    })
    predictions = make_zip(tmp_path / "preds.zip", {
        "x.json": outputs("LaMP_3", [("a", "3"), ("b", "2")]),
        "y/z.json": outputs("LaMP_1", [("a", "[1]"), ("b", "[1]")]),
    })
    return golds, predictions


def test_eval_all_scores_by_internal_task_and_reports_missing_tasks(zips, tmp_path):
    golds, predictions = zips
    user_folder = tmp_path / "work"
    write(user_folder / "keep.txt", "user data")
    output = tmp_path / "results.json"
    done = run_cli("eval/eval_all.py", "--golds_zip", str(golds), "--preds_zip", str(predictions),
                   "--temp_dir", str(user_folder), "--output_file", str(output))
    assert done.returncode == 0, done.stderr
    results = json.loads(output.read_text())
    assert list(results) == ["LaMP_1", "LaMP_3", "missing_tasks", "ignored_files"]   # keyed by task
    assert list(results["LaMP_1"])[:2] == ["accuracy", "f1"]
    assert metric_values(results["LaMP_1"]) == {"accuracy": 0.5, "f1": pytest.approx(1 / 3)}
    assert metric_values(results["LaMP_3"]) == {"MAE": 1.0, "RMSE": pytest.approx(2 ** 0.5)}
    assert results["LaMP_3"]["num_examples"] == 2
    assert results["missing_tasks"] == ["LaMP_4"]
    assert results["ignored_files"] == [f"{golds}:dev_questions.json"]
    assert "no predictions for 1 task(s) with golds: LaMP_4" in done.stdout
    assert sorted(p.name for p in user_folder.iterdir()) == ["keep.txt"]  # only our own subfolder was removed


def test_eval_all_require_all_and_bad_zips_exit_2(zips, tmp_path):
    golds, predictions = zips
    cases = [
        (["--golds_zip", str(golds), "--preds_zip", str(predictions), "--require_all"], "LaMP_4 (--require_all)"),
        (["--golds_zip", str(golds), "--preds_zip", str(write(tmp_path / "bad.zip", "not a zip"))], "not a zip"),
        (["--golds_zip", str(predictions), "--preds_zip", str(golds)], "without golds: LaMP_4"),
        (["--golds_zip", str(golds), "--preds_zip", str(make_zip(tmp_path / "none.zip", {"notes.json": []}))],
         "nothing scored"),
        (["--golds_zip", str(golds), "--preds_zip", str(make_zip(tmp_path / "two.zip", {
            "a.json": outputs("LaMP_1", [("a", "[1]"), ("b", "[1]")]),
            "b/a.json": outputs("LaMP-1", [("a", "[1]"), ("b", "[1]")])}))], "two files for task LaMP_1"),
    ]
    for args, message in cases:
        done = run_cli("-m", "eval.eval_all", *args, "--output_file", str(tmp_path / "out.json"))
        assert done.returncode == 2, (args, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
        assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("script", [["-m", "eval.eval_task"], ["eval/eval_task.py"], ["-m", "eval.eval_all"],
                                    ["eval/eval_all.py"], ["bench/bench_eval.py"]])
def test_help(script):
    done = run_cli(*script, "--help")
    assert done.returncode == 0 and "usage:" in done.stdout


def test_setup_wordnet_help():
    done = subprocess.run(["bash", "scripts/setup_wordnet.sh", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0 and "METEOR" in done.stdout


def test_bench_eval_small_run_reports_identical_scores():
    done = run_cli("bench/bench_eval.py", "--num_pairs", "20", "--workers", "1", "--metrics", "rouge-1")
    assert done.returncode == 0, done.stderr
    assert "predictions/s" in done.stdout and "identical to workers=1: yes" in done.stdout
