"""Decoding choices for short answers: one-line stop, output-only repetition penalty, length from train golds.

The shared generation flags (data.cli) turn them into lm handle.generate() options (the one-line stop
follows the task registry); lm.generation implements them (tests/test_lm.py checks the decoding itself).
"""
import argparse
import functools
import json
from pathlib import Path

import pytest

from data.cli import DEFAULT_LENGTH_QUANTILE, add_generation_arguments, generation_options, parse_args, run
from data.errors import InputError
from data.loaders import read_golds
from data.tasks import get_task, list_tasks
from lamp_rag import evaluate_llm
from lm.generation import length_budget

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "LaMP_4"

# Hand-written LaMP_4 golds; the lengths below are counted with the tiny test tokenizer.
TRAIN_GOLDS = {"task": "LaMP_4", "golds": [
    {"id": "t1", "output": "the new bridge"},
    {"id": "t2", "output": "our team celebrated the football match"},
    {"id": "t3", "output": "a young scientist studied rising food prices and the weather forecast"},
    {"id": "t4", "output": "local elections"},
]}


def options(*argv: str, task: str = "LaMP_4", tokenizer=None) -> dict:
    parser = argparse.ArgumentParser()
    add_generation_arguments(parser)
    spec = get_task(task)
    return generation_options(parse_args(parser, [str(a) for a in argv]), spec.max_new_tokens, spec=spec,
                              tokenizer=tokenizer)


@pytest.fixture
def train_golds(tmp_path):
    path = tmp_path / "train_outputs.json"
    path.write_text(json.dumps(TRAIN_GOLDS), encoding="utf-8")
    return path


def token_counts(tokenizer) -> list[int]:
    return [len(tokenizer(gold["output"], add_special_tokens=False)["input_ids"]) for gold in TRAIN_GOLDS["golds"]]


def test_single_line_tasks_stop_at_the_line_end_by_default_and_long_form_tasks_do_not():
    assert options()["stop_at_newline"] is True
    assert options(task="LongLaMP_2")["stop_at_newline"] is False
    assert options("--stop_at_newline", "off")["stop_at_newline"] is False
    assert options("--stop_at_newline", "on", task="LongLaMP_2")["stop_at_newline"] is True
    assert {spec.name for spec in list_tasks() if spec.single_line} >= {"LaMP_1", "LaMP_3", "LaMP_4", "LaMP_7"}
    assert not any(spec.single_line for spec in list_tasks() if spec.benchmark == "LongLaMP")


def test_output_repetition_penalty_is_off_unless_asked_for():
    assert options()["output_repetition_penalty"] == 1.0
    assert options("--output_repetition_penalty", "1.7")["output_repetition_penalty"] == 1.7


def test_length_budget_is_the_quantile_of_the_gold_token_counts(tiny_tokenizer):
    counts = sorted(token_counts(tiny_tokenizer))
    assert len(set(counts)) == 4
    texts = [gold["output"] for gold in TRAIN_GOLDS["golds"]]
    assert length_budget(tiny_tokenizer, texts, 1.0) == counts[-1]
    assert length_budget(tiny_tokenizer, texts, 0.5) == counts[2]        # "higher": a real gold's length
    assert length_budget(tiny_tokenizer, texts, 0.25) == counts[1]
    with pytest.raises(InputError, match="quantile"):
        length_budget(tiny_tokenizer, texts, 0.0)


def test_length_from_golds_sets_max_new_tokens(tiny_tokenizer, train_golds):
    counts = sorted(token_counts(tiny_tokenizer))
    assert options()["max_new_tokens"] == get_task("LaMP_4").max_new_tokens
    assert options("--max_new_tokens", 7)["max_new_tokens"] == 7
    budget = options("--length_from_golds", train_golds, tokenizer=tiny_tokenizer)["max_new_tokens"]
    assert budget == length_budget(tiny_tokenizer, [g["output"] for g in TRAIN_GOLDS["golds"]],
                                   DEFAULT_LENGTH_QUANTILE)
    assert budget != get_task("LaMP_4").max_new_tokens
    assert options("--length_from_golds", train_golds, "--length_quantile", "0.25",
                   tokenizer=tiny_tokenizer)["max_new_tokens"] == counts[1]


@pytest.mark.parametrize("argv, message", [
    (["--length_quantile", "0.5"], "--length_quantile needs --length_from_golds"),
    (["--length_from_golds", "GOLDS", "--max_new_tokens", "5"], "not both"),
    (["--length_from_golds", "GOLDS", "--length_quantile", "1.5"], "quantile must be in"),
])
def test_length_flag_misuse_is_an_input_error(tiny_tokenizer, train_golds, argv, message):
    argv = [str(train_golds) if a == "GOLDS" else a for a in argv]
    with pytest.raises(InputError, match=message):
        options(*argv, tokenizer=tiny_tokenizer)


def test_golds_of_another_task_are_refused(tiny_tokenizer, tmp_path):
    path = tmp_path / "lamp5.json"
    path.write_text(json.dumps({**TRAIN_GOLDS, "task": "LaMP_5"}), encoding="utf-8")
    with pytest.raises(InputError, match="LaMP_5 but the task is LaMP_4"):
        options("--length_from_golds", path, tokenizer=tiny_tokenizer)


def test_evaluate_llm_generates_with_the_train_gold_budget_and_the_asked_options(tiny_causal_lm, tiny_tokenizer,
                                                                                  train_golds, tmp_path, monkeypatch):
    from lm.handle import ModelHandle

    seen = []
    original = ModelHandle.generate

    @functools.wraps(original)      # keeps the signature, which the runtime reads its defaults from
    def spy(self, prompts, **kwargs):
        seen.append(kwargs)
        return original(self, prompts, **kwargs)

    monkeypatch.setattr(ModelHandle, "generate", spy)
    argv = ["--task", "LaMP_4", "--model_addr", tiny_causal_lm, "--validation_data", SAMPLE / "dev_questions.json",
            "--validation_outputs", SAMPLE / "dev_outputs.json", "--output_dir", tmp_path / "run", "--limit", 3,
            "--length_from_golds", train_golds, "--length_quantile", "0.25", "--output_repetition_penalty", "1.3"]
    assert run(evaluate_llm.main, [str(a) for a in argv]) == 0
    assert seen and all(kwargs["max_new_tokens"] == sorted(token_counts(tiny_tokenizer))[1] for kwargs in seen)
    assert all(kwargs["stop_at_newline"] is True for kwargs in seen)
    assert all(kwargs["output_repetition_penalty"] == 1.3 for kwargs in seen)
