"""leaderboard.cells: every method's commands on the same dev users, shared stages once, flags that parse."""
from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path

import pytest

from data.cli import parse_args
from data.tasks import get_task
from leaderboard.cell import TaskData
from leaderboard.cells import DEFAULT_TASKS, method_cells, skipped_methods

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

# The list of methods (issue 15): a method dropped from the cells fails here.
EVERY_METHOD = ["no profile", "RAG BM25", "RAG dense", "RAG recency", "Profile study: outputs only",
                "Profile study: other users' items", "ROPG-KD", "ROPG-RL", "RSPG-Pre", "RSPG-Post", "TAM", "OPPU",
                "OPPU+CD", "OPPU+DPO", "OPPU+DPO+CD", "CURP", "logit adjust"]
# flags naming what a step writes (with its module and mode, e.g. CoPe's steps under one --output_dir): two
# different commands must never write the same place, or a shared stage would run twice and overwrite itself
MODE_FLAGS = ("--is_train", "--is_cd")
OUTPUT_FLAGS = ("--output_dir", "--output", "--result_dir", "--merged_output_addr", "--output_dataset_addr",
                "--output_ranking_addr")


def task_data(task: str) -> TaskData:
    folder = SAMPLE / task
    if (folder / "dev_questions.json").is_file():
        return TaskData(task, folder / "train_questions.json", folder / "train_outputs.json",
                        folder / "dev_questions.json", folder / "dev_outputs.json")
    return TaskData(task, folder / "train.json", None, folder / "val.json", None)


def cells_of(task: str, out: Path, quick: bool = False):
    return method_cells(task_data(task), "default", out / task, quick)


def parser_of(module_name: str):
    module = importlib.import_module(module_name)
    if hasattr(module, "make_parser"):
        return module.make_parser()
    from ropg.training import make_parser   # train_kd / train_rl share ROPG's training parser

    return make_parser(f"python -m {module_name}", module.__doc__, with_temperature=module_name.endswith("_kd"))


def written_places(argv) -> list[str]:
    places = [argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag in OUTPUT_FLAGS]
    if "--checkpoint_dir" in argv and "--name" in argv:       # ROPG / RSPG runs: <checkpoint_dir>/<name>
        places.append(str(Path(argv[argv.index("--checkpoint_dir") + 1]) / argv[argv.index("--name") + 1]))
    return places


def test_a_generation_task_gets_every_method_and_one_baseline(tmp_path):
    cells = cells_of("LaMP_4", tmp_path)
    assert [cell.method for cell in cells] == EVERY_METHOD
    assert [cell.method for cell in cells if cell.baseline] == ["no profile"]
    assert skipped_methods("LaMP_4") == []
    assert all(cell.task == "LaMP_4" for cell in cells)


@pytest.mark.parametrize("quick", [False, True])
def test_predictions_and_run_folders_are_the_cells_own_under_out_dir(tmp_path, quick):
    out = tmp_path / "LaMP_4"
    cells = cells_of("LaMP_4", tmp_path, quick)
    predictions = [cell.predictions for cell in cells]
    assert len(set(predictions)) == len(predictions)
    for cell in cells:
        assert cell.predictions.is_relative_to(out) and all(folder.is_relative_to(out) for folder in cell.run_dirs)
        # no folder is nested in another: each training.json under them is counted once
        assert not any(a != b and a.is_relative_to(b) for a in cell.run_dirs for b in cell.run_dirs), cell.run_dirs
        assert len(set(cell.run_dirs)) == len(cell.run_dirs)
        # the last step writes the folder the predictions file is in
        assert any(cell.predictions.is_relative_to(place) for place in written_places(cell.steps[-1]))
        assert all(isinstance(arg, str) for argv in cell.steps for arg in argv)


@pytest.mark.parametrize("task", ["LaMP_4", "LaMP_2", "LongLaMP_2"])
def test_each_place_is_written_by_one_command_so_shared_stages_run_once(tmp_path, task):
    commands = defaultdict(set)
    for cell in cells_of(task, tmp_path):
        for argv in cell.steps:
            for place in written_places(argv):
                commands[place, argv[2], tuple(flag for flag in MODE_FLAGS if flag in argv)].add(argv)
    assert commands and all(len(argvs) == 1 for argvs in commands.values()), \
        [place for place, argvs in commands.items() if len(argvs) > 1]


def test_shared_stages_appear_with_the_same_argv_in_every_cell_that_needs_them(tmp_path):
    cells = {cell.method: cell for cell in cells_of("LaMP_4", tmp_path)}
    tam = cells["TAM"].steps[-1]
    assert "cope.tam" in tam and all(tam in cells[m].steps for m in ("OPPU", "OPPU+CD", "OPPU+DPO", "OPPU+DPO+CD"))
    sft = cells["OPPU"].steps[2]
    assert "cope.oppu_sft" in sft and "--is_train" in sft and sft in cells["OPPU+DPO+CD"].steps
    assert cells["ROPG-KD"].steps[:2] == cells["ROPG-RL"].steps[:2]           # feedback and its merge
    assert cells["RSPG-Pre"].steps[:-1] == cells["RSPG-Post"].steps[:-1]      # the arms and the selector data
    assert cells["OPPU+DPO"].steps[:-1] == cells["OPPU+DPO+CD"].steps[:-1]


@pytest.mark.parametrize("task", ["LaMP_4", "LaMP_2", "LaMP_3", "LongLaMP_2"])
@pytest.mark.parametrize("quick", [False, True])
def test_every_step_is_an_existing_entry_point_whose_flags_parse(tmp_path, task, quick):
    for cell in cells_of(task, tmp_path, quick):
        for argv in cell.steps:
            assert argv[:2] == ("python", "-m"), argv
            parse_args(parser_of(argv[2]), list(argv[3:]))     # a flag typo is an InputError here


def test_quick_is_a_subset_of_full_with_the_baseline_and_smaller_training(tmp_path):
    full = {cell.method: cell for cell in cells_of("LaMP_4", tmp_path)}
    quick = [cell for cell in cells_of("LaMP_4", tmp_path, quick=True) if cell.in_quick]
    assert {cell.method for cell in quick} < set(full)
    assert "no profile" in {cell.method for cell in quick if cell.baseline}
    # the same data, so the same generation commands; only training sizes shrink
    assert next(c for c in quick if c.baseline).steps == full["no profile"].steps
    quick_all = {cell.method: cell for cell in cells_of("LaMP_4", tmp_path, quick=True)}
    assert quick_all["ROPG-KD"].steps != full["ROPG-KD"].steps
    assert "--limit" in quick_all["ROPG-KD"].steps[0] and "--limit" not in full["ROPG-KD"].steps[0]


def test_methods_that_do_not_apply_are_absent_with_a_reason_from_the_registry(tmp_path):
    for task in ("LaMP_2", "LaMP_3", "LongLaMP_2", "LongLaMP_3"):
        spec = get_task(task)
        skipped = dict(skipped_methods(task))
        methods = [cell.method for cell in cells_of(task, tmp_path)]
        assert methods == [method for method in EVERY_METHOD if method not in skipped]
        assert ("logit adjust" in skipped) == (spec.kind != "generation")
        assert ("OPPU" in skipped) == ("system" not in spec.text_templates)
        assert ("RAG recency" in skipped) == (spec.date_field is None)
        assert all(reason for reason in skipped.values())
    assert "logit adjust" in dict(skipped_methods("LaMP_2")) and "OPPU" in dict(skipped_methods("LaMP_3"))


def test_default_tasks_are_registry_names():
    assert DEFAULT_TASKS and all(get_task(task).name == task for task in DEFAULT_TASKS)
