"""lamp_rag zero-shot pipeline: prompts, the run folder evaluate_llm writes through runtime, its CLI."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from data.cli import run
from data.errors import InputError
from data.loaders import load_examples, read_golds
from data.tasks import get_task
from eval.scoring import metric_values
from lamp_rag import evaluate_llm
from lamp_rag.pipeline import build_prompts, resolve_prompt_style

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "data" / "sample" / "LaMP_4"
QUESTIONS, OUTPUTS = SAMPLE / "dev_questions.json", SAMPLE / "dev_outputs.json"


@pytest.fixture(scope="module")
def tiny_handle(tiny_causal_lm):
    from lm import load_model

    return load_model(str(tiny_causal_lm), device="cpu")


def evaluate(*argv: str) -> int:
    return run(evaluate_llm.main, [str(a) for a in argv])


@pytest.mark.parametrize("profile", [[], ["--use_profile", "--retriever", "bm25", "--num_retrieved", "2"]],
                         ids=["no_profile", "bm25_top2"])
def test_evaluate_llm_writes_gold_format_predictions_scores_and_config(tiny_causal_lm, tmp_path, capsys, profile):
    out = tmp_path / "run"
    code = evaluate("--task", "news_headline", "--model_addr", tiny_causal_lm, "--validation_data", QUESTIONS,
                    "--validation_outputs", OUTPUTS, "--output_dir", out, "--limit", 5, "--max_new_tokens", 6,
                    "--batch_size", 2, *profile)
    assert code == 0
    task, predictions = read_golds(out / "predictions.json")
    assert task == "LaMP_4"                                   # canonical name, not the alias given
    assert list(predictions) == [e.id for e in load_examples(QUESTIONS, task="LaMP_4", limit=5)]
    assert all(isinstance(text, str) and "\n" not in text for text in predictions.values())
    report = json.loads((out / "scores.json").read_text())
    assert report["task"] == "LaMP_4" and report["num_examples"] == 5
    assert set(metric_values(report)) == set(get_task("LaMP_4").metrics)
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["task"] == "LaMP_4" and config["prompt_style"] == "chat" and config["method"] == "lamp_rag"
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    inputs = {e.id: e.input for e in load_examples(QUESTIONS, task="LaMP_4", limit=5)}
    assert [p["id"] for p in prompts] == list(predictions)
    # the rendered chat turn as the model reads it (the tiny model's context cuts long ones from the left)
    assert all(p["text"].endswith(f"{inputs[p['id']]}<|im_end|>\n<|im_start|>assistant\n") for p in prompts)
    assert (out / "generations.jsonl").is_file() and (out / "run.log").is_file()
    assert config["args"]["use_profile"] is bool(profile)
    printed = capsys.readouterr().out
    assert str(out / "predictions.json") in printed and "LaMP_4 rouge-1:" in printed


def test_profile_items_reach_the_prompt(tiny_handle):
    spec = get_task("LaMP_4")
    example = load_examples(QUESTIONS, OUTPUTS, limit=1)[0]
    items = example.profile[:2]
    chat = build_prompts(spec, [example], [items], resolve_prompt_style("auto", tiny_handle), tiny_handle.tokenizer)[0]
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant", "user"]
    assert chat[1]["content"] == items[0]["title"] and chat[-1]["content"] == example.input
    official = build_prompts(spec, [example], None, "official", tiny_handle.tokenizer)[0]
    assert official == example.input


def outputs_of_another_task(tmp_path):
    path = tmp_path / "lamp3_outputs.json"
    path.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "2000", "output": "5"}]}))
    return path


BAD_INPUTS = {
    "missing_file": ("--validation_data", lambda tmp_path: tmp_path / "missing.json"),
    "unknown_task": ("--task", lambda tmp_path: "LaMP_44"),
    "outputs_of_another_task": ("--validation_outputs", outputs_of_another_task),
    "questions_as_outputs": ("--validation_outputs", lambda tmp_path: QUESTIONS),
    "no_new_tokens": ("--max_new_tokens", lambda tmp_path: 0),
    "no_new_tokens_reference_flag": ("--generation_max_length", lambda tmp_path: 0),
    "no_beams": ("--generation_num_beams", lambda tmp_path: 0),
}


@pytest.mark.parametrize("flag,value", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_exit_2_and_no_output(tiny_causal_lm, tmp_path, capsys, flag, value):
    args = {"--task": "LaMP_4", "--model_addr": tiny_causal_lm, "--validation_data": QUESTIONS,
            "--validation_outputs": OUTPUTS, "--output_dir": tmp_path / "run", flag: value(tmp_path)}
    assert evaluate(*[part for pair in args.items() for part in pair]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_help_names_the_default_prompt_style():
    result = subprocess.run([sys.executable, "-m", "lamp_rag.evaluate_llm", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert "chat" in result.stdout and "official" in result.stdout and "FlanT5" in result.stdout


@pytest.mark.realmodel
def test_default_model_generates_headlines(tmp_path):
    out = tmp_path / "run"
    assert evaluate("--task", "LaMP_4", "--model_addr", "default", "--validation_data", QUESTIONS,
                    "--validation_outputs", OUTPUTS, "--output_dir", out, "--limit", 2, "--use_profile",
                    "--num_retrieved", 1, "--max_new_tokens", 16) == 0
    _, predictions = read_golds(out / "predictions.json")
    assert len(predictions) == 2 and all(text.strip() for text in predictions.values())
    assert 0.0 <= json.loads((out / "scores.json").read_text())["rouge-1"] <= 1.0


@pytest.mark.parametrize("style", ["official", "chat"])
def test_official_prompts_are_cut_to_max_length_from_the_right(tiny_causal_lm, tiny_handle, tmp_path, monkeypatch,
                                                                style):
    import lm.generation
    from lm.prompting import encode_prompts

    calls = []

    def spy(handle, prompts, chat, max_tokens, truncation_side="left"):
        encoded = encode_prompts(handle, prompts, chat, max_tokens, truncation_side)
        calls.append((prompts, max_tokens, truncation_side, encoded))
        return encoded

    monkeypatch.setattr(lm.generation, "encode_prompts", spy)
    code = evaluate("--task", "LaMP_4", "--model_addr", tiny_causal_lm, "--validation_data", QUESTIONS,
                    "--validation_outputs", OUTPUTS, "--output_dir", tmp_path / "run", "--limit", 3,
                    "--max_new_tokens", 2, "--use_profile", "--num_retrieved", 2, "--prompt_style", style,
                    "--max_length", 32, "--chat", "off" if style == "official" else "auto")
    assert code == 0 and calls
    for prompts, max_tokens, side, encoded in calls:
        if style == "chat":      # unchanged: only lm's default left cut to the model's context
            assert side == "left" and max_tokens > 32
            continue
        assert (max_tokens, side) == (32, "right") and all(len(ids) <= 32 for ids in encoded)
        for prompt, ids in zip(prompts, encoded):    # the start (the profile) survives, the end is lost
            full = encode_prompts(tiny_handle, [prompt], False, None)[0]
            assert len(full) > 32 and ids == full[:32]



@pytest.mark.parametrize("argv, decoding", [
    (["--prompt_style", "official"], {"num_beams": 4, "max_new_tokens": 128, "batch_size": 16}),
    (["--prompt_style", "official", "--generation_num_beams", 2, "--generation_max_length", 3,
      "--per_device_batch_size", 5], {"num_beams": 2, "max_new_tokens": 3, "batch_size": 5}),
    (["--prompt_style", "chat"], {"num_beams": 1, "max_new_tokens": 32, "batch_size": 16}),
], ids=["official_reference_decoding", "reference_flags", "chat_registry_length"])
def test_decoding_follows_the_prompt_style_unless_told(tiny_causal_lm, tmp_path, monkeypatch, argv, decoding):
    import runtime.generation

    seen = []
    monkeypatch.setattr(runtime.generation, "generate_and_score",
                        lambda spec, handle, examples, prompts, output_dir, options, **kw: seen.append(options) or {})
    assert evaluate("--task", "LaMP_4", "--model_addr", tiny_causal_lm, "--validation_data", QUESTIONS,
                    "--validation_outputs", OUTPUTS, "--output_dir", tmp_path / "run", "--limit", 2, *argv) == 0
    [options] = seen
    assert {name: options[name] for name in decoding} == decoding
    assert json.loads((tmp_path / "run" / "config.json").read_text())["decoding"]["num_beams"] == decoding["num_beams"]


SCRIPTS_LOADING_MODELS = {
    "evaluate_llm": ("lamp_rag.evaluate_llm", ["--task", "LaMP_4", "--validation_data", QUESTIONS,
                                               "--validation_outputs", OUTPUTS, "--model_addr", "org/model"]),
    "train_llm": ("lamp_rag.train_llm", ["--task", "LaMP_4", "--train_data", QUESTIONS, "--train_outputs", OUTPUTS,
                                         "--validation_data", QUESTIONS, "--validation_outputs", OUTPUTS,
                                         "--model_name", "org/model"]),
    "profile_study": ("lamp_rag.profile_study", ["--task_name", "LaMP_4", "--model_id", "org/model"]),
}


@pytest.mark.parametrize("script", SCRIPTS_LOADING_MODELS, ids=SCRIPTS_LOADING_MODELS.keys())
def test_one_flag_allows_a_download_and_names_the_cache(script, tmp_path, monkeypatch):
    import importlib

    import lm.loading

    calls = []

    def record(name, **options):
        calls.append((name, options))
        raise InputError("stop before loading")

    monkeypatch.setattr(lm.loading, "load_model", record)
    module, argv = SCRIPTS_LOADING_MODELS[script]
    main = importlib.import_module(module).main
    out = ["--result_dir" if script == "profile_study" else "--output_dir", tmp_path / "run", "--limit", 2]
    assert run(main, [str(a) for a in [*argv, *out]]) == 2
    assert run(main, [str(a) for a in [*argv, *out, "--allow_download", "--cache_dir", tmp_path / "hf"]]) == 2
    assert [(name, o["allow_download"], o["cache_dir"]) for name, o in calls] == \
        [("org/model", False, None), ("org/model", True, str(tmp_path / "hf"))]
