"""eval.report reads the run folders of every method with no per-method code (the tables of scripts/lamp_rag.sh
and scripts/demo.sh), and the demo scripts' bash syntax."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from data.cli import run
from data.errors import InputError
from eval.report import Row, collect_rows, main, markdown_table, render, rows_from_json
from eval.scoring import score_files

REPO_ROOT = Path(__file__).resolve().parent.parent


def eval_report(task: str, num_examples: int, **metrics: float) -> dict:
    """What eval.scoring writes as scores.json (lamp_rag) or eval_task --output_file: metrics on top."""
    return {**metrics, "task": task, "num_examples": num_examples, "missing_predictions": 0,
            "empty_predictions": 0}


def write(path: Path, obj, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def lamp_rag_out(tmp_path) -> Path:
    """A scripts/lamp_rag.sh output folder: rankings, two zero-shot runs and a fine-tuning run."""
    out = tmp_path / "lamp_rag"
    write(out / "rank" / "dev_bm25.json", {"q1": ["p1"]})
    # Written out of alphabetical order: the table follows the stages (modification time).
    write(out / "zero_shot_no_profile" / "scores.json", eval_report("LaMP_4", 24, **{"rouge-1": 0.1, "rouge-L": 0.09}),
          mtime=1_000)
    write(out / "zero_shot_bm25_top3" / "scores.json", eval_report("LaMP_4", 24, **{"rouge-1": 0.6, "rouge-L": 0.55}),
          mtime=2_000)
    write(out / "finetune" / "checkpoints" / "checkpoint-3" / "scores.json",
          eval_report("LaMP_4", 24, **{"rouge-1": 0.0, "rouge-L": 0.0}), mtime=2_500)
    write(out / "finetune" / "validation" / "scores.json",
          eval_report("LaMP_4", 24, **{"rouge-1": 0.5, "rouge-L": 0.45}), mtime=3_000)
    return out


@pytest.fixture
def logit_adjust_out(tmp_path) -> Path:
    """Another method's run folders (one per beta), with its own measure and a file name beside the counts."""
    out = tmp_path / "logit_adjust"
    for beta, values, mtime in (("beta_0", (0.3, 0.26, 0.16, 0.68), 4_000), ("beta_0.1", (0.31, 0.27, 0.15, 0.71), 5_000)):
        metrics = dict(zip(("rouge-1", "rouge-L", "meteor", "profile_word_share"), values))
        write(out / beta / "scores.json", {**eval_report("LongLaMP_2", 8, **metrics), "golds_file": "golds.json"},
              mtime=mtime)
        write(out / beta / "config.json", {"method": "logit_adjust", "args": {"beta": beta}})
        write(out / beta / "predictions.json", {"task": "LongLaMP_2", "golds": []})   # not a score file
    return out


def test_a_lamp_rag_folder_gives_one_row_per_stage_in_stage_order_without_checkpoints(lamp_rag_out):
    rows = collect_rows([lamp_rag_out])
    assert [row.name for row in rows] == ["zero_shot_no_profile", "zero_shot_bm25_top3", "finetune/validation"]
    assert rows[1] == Row("zero_shot_bm25_top3", "LaMP_4", 24, {"rouge-1": 0.6, "rouge-L": 0.55})


def test_single_task_table_has_no_task_column_and_four_decimals(lamp_rag_out):
    assert markdown_table(collect_rows([lamp_rag_out])).splitlines() == [
        "| run | n | rouge-1 | rouge-L |",
        "|---|---|---|---|",
        "| zero_shot_no_profile | 24 | 0.1000 | 0.0900 |",
        "| zero_shot_bm25_top3 | 24 | 0.6000 | 0.5500 |",
        "| finetune/validation | 24 | 0.5000 | 0.4500 |",
    ]


def test_another_methods_run_folders_read_the_same_way_with_its_own_measure(logit_adjust_out):
    rows = collect_rows([logit_adjust_out])
    assert [(row.name, row.task, row.num_predictions) for row in rows] == [
        ("beta_0", "LongLaMP_2", 8), ("beta_0.1", "LongLaMP_2", 8)]
    # counts and file names are not metrics; the method's own number is
    assert rows[1].metrics == {"rouge-1": 0.31, "rouge-L": 0.27, "meteor": 0.15, "profile_word_share": 0.71}


def test_a_run_folder_written_by_the_runtime_is_a_row(tmp_path):
    from runtime.run_folder import write_scores

    golds = {"a": "markets fell sharply", "b": "rain in the city"}
    metrics = write_scores(tmp_path / "run", "LaMP_4", golds, {"a": "markets fell", "b": "sun"})
    assert collect_rows([tmp_path]) == [Row("run", "LaMP_4", 2, metrics)]


def test_a_legacy_results_file_is_no_run_folder(tmp_path):
    write(tmp_path / "old" / "results.json", {"setup": {"task": "LongLaMP_2", "num_examples": 8}, "baseline": {},
                                              "personalized": {}})
    with pytest.raises(InputError, match="no scores.json"):
        collect_rows([tmp_path / "old"])


def test_several_paths_keep_their_order_prefix_names_and_add_a_task_column(lamp_rag_out, logit_adjust_out):
    rows = collect_rows([lamp_rag_out, logit_adjust_out])
    assert [row.name for row in rows] == ["lamp_rag/zero_shot_no_profile", "lamp_rag/zero_shot_bm25_top3",
                                          "lamp_rag/finetune/validation", "logit_adjust/beta_0",
                                          "logit_adjust/beta_0.1"]
    lines = markdown_table(rows).splitlines()
    # Default columns: the metrics every row has.
    assert lines[0] == "| run | task | n | rouge-1 | rouge-L |"
    assert lines[-1] == "| logit_adjust/beta_0.1 | LongLaMP_2 | 8 | 0.3100 | 0.2700 |"


def test_requested_metrics_a_row_lacks_print_a_dash(lamp_rag_out, logit_adjust_out):
    lines = markdown_table(collect_rows([lamp_rag_out, logit_adjust_out]), ["rouge-1", "meteor"]).splitlines()
    assert lines[2] == "| lamp_rag/zero_shot_no_profile | LaMP_4 | 24 | 0.1000 | - |"
    assert lines[-1].endswith("| 0.3100 | 0.1500 |")


def test_rows_without_a_shared_metric_show_every_metric():
    rows = [Row("a", "LaMP_3", 10, {"MAE": 0.5, "RMSE": 0.7}), Row("b", "LaMP_4", 10, {"rouge-1": 0.2})]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| run | task | n | MAE | RMSE | rouge-1 |"
    assert lines[3] == "| b | LaMP_4 | 10 | - | - | 0.2000 |"


def test_eval_all_output_gives_one_row_per_task():
    data = {"LaMP_1": {"accuracy": 0.5, "task": "LaMP_1", "num_examples": 4, "empty_predictions": 1},
            "LaMP_4": {"rouge-1": 0.3, "num_examples": 6}, "missing_tasks": [], "ignored_files": []}
    assert rows_from_json(data, "all") == [Row("all LaMP_1", "LaMP_1", 4, {"accuracy": 0.5}),
                                           Row("all LaMP_4", "LaMP_4", 6, {"rouge-1": 0.3})]


def test_reads_what_the_scorers_write(tmp_path):
    golds = write(tmp_path / "golds.json", {"task": "LaMP_3", "golds": [{"id": "a", "output": "4"},
                                                                         {"id": "b", "output": "2"}]})
    preds = write(tmp_path / "preds.json", {"task": "LaMP_3", "golds": [{"id": "a", "output": "5"},
                                                                         {"id": "b", "output": ""}]})
    write(tmp_path / "run" / "scores.json", score_files(golds, preds))
    assert collect_rows([tmp_path / "run"]) == [Row("run", "LaMP_3", 2, {"MAE": 2.0, "RMSE": 5 ** 0.5})]


def test_a_score_file_given_directly_is_named_by_its_folder(lamp_rag_out):
    rows = collect_rows([lamp_rag_out / "zero_shot_bm25_top3" / "scores.json"])
    assert [row.name for row in rows] == ["zero_shot_bm25_top3"]


def test_render_puts_the_title_above_the_table(lamp_rag_out):
    rows = collect_rows([lamp_rag_out])
    assert render(rows).startswith("LaMP_4\n\n| run |")
    assert render(rows, title="LaMP_4 dev, out").startswith("LaMP_4 dev, out\n\n| run |")


def test_cli_prints_and_writes_the_table(lamp_rag_out, logit_adjust_out, tmp_path, capsys):
    output = tmp_path / "results.md"
    assert run(main, [str(lamp_rag_out), str(logit_adjust_out), "--metrics", "rouge-1", "rouge-L",
                      "--title", "Demo", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    text = output.read_text(encoding="utf-8")
    assert text.startswith("Demo\n\n| run | task | n | rouge-1 | rouge-L |\n")
    assert text in printed and f"table: {output}" in printed


@pytest.mark.parametrize("content, message", [
    ({"task": "LongLaMP_2", "golds": []}, "not a score file"),
    ({"task": "LaMP_4", "rouge-1": 0.1, "num_examples": "3"}, "num_examples"),
    ({"task": "LaMP_4", "rouge-1": "high", "num_examples": 3}, "field 'rouge-1': must be a number"),
    ({"task": "LaMP_4", "metrics": {"rouge-1": 0.1}, "num_examples": 3}, "field 'metrics': must be a number"),
    ({"LaMP_4": [0.1], "missing_tasks": []}, "field 'LaMP_4': must be an eval report"),
])
def test_bad_score_files_are_one_line_errors_naming_the_file(tmp_path, capsys, content, message):
    path = write(tmp_path / "run" / "scores.json", content)
    assert run(main, [str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}") and message in error and error.count("\n") == 1


def test_requested_metrics_no_row_has_are_an_error(lamp_rag_out, capsys):
    assert run(main, [str(lamp_rag_out), "--metrics", "rouge-1", "rouge-9"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --metrics: no row has rouge-9; the rows have rouge-1, rouge-L")
    assert error.count("\n") == 1


def test_missing_paths_and_folders_without_score_files_are_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        collect_rows([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scores.json"):
        collect_rows([tmp_path / "empty"])
    with pytest.raises(InputError, match="no rows"):
        markdown_table([])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", ["demo.sh", "lamp_rag.sh", "test.sh", "setup.sh"])
def test_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(REPO_ROOT / "scripts" / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
