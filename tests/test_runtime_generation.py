"""runtime.generation: the one resume scheme (keyed by what changes the text), torn lines, prompts.jsonl,
predictions and scores; data.fingerprint, the one content hash."""
import json
import logging
from pathlib import Path

import pytest

from data.fingerprint import fingerprint
from data.loaders import load_examples, read_golds
from data.records import Example
from data.tasks import get_task
from runtime.generation import generate_and_score, generate_outputs, postprocess, text_key
from runtime.run_folder import GENERATIONS_FILE, PREDICTIONS_FILE, PROMPTS_FILE, SCORES_FILE, write_scores

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "LaMP_4"
QUESTIONS, OUTPUTS = SAMPLE / "dev_questions.json", SAMPLE / "dev_outputs.json"


@pytest.fixture(scope="module")
def tiny_handle(tiny_causal_lm):
    from lm import load_model

    return load_model(str(tiny_causal_lm), device="cpu")


@pytest.fixture
def sample():
    examples = load_examples(QUESTIONS, OUTPUTS, limit=6)
    return examples, [example.input for example in examples]


class CountingGenerate:
    """Wraps handle.generate: counts calls and raises on call number ``fail_on`` (an interruption)."""

    def __init__(self, generate, fail_on=None):
        self.generate, self.fail_on, self.calls = generate, fail_on, 0

    def __call__(self, prompts, **options):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        return self.generate(prompts, **options)


def counting(monkeypatch, handle, generate=None, fail_on=None) -> CountingGenerate:
    counter = CountingGenerate(generate or handle.generate, fail_on)
    monkeypatch.setattr(handle, "generate", counter)
    return counter


def test_generation_resumes_from_finished_batches_keyed_by_what_changes_the_text(tiny_handle, tmp_path, monkeypatch,
                                                                                  sample):
    spec = get_task("LaMP_4")
    examples, prompts = sample
    options = {"max_new_tokens": 5, "batch_size": 2}
    plain = tiny_handle.generate
    counting(monkeypatch, tiny_handle, plain, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        generate_and_score(spec, tiny_handle, examples, prompts, tmp_path, options)
    done = [json.loads(line) for line in (tmp_path / GENERATIONS_FILE).read_text().splitlines()]
    assert len(done) == 2 and not (tmp_path / PREDICTIONS_FILE).exists()

    second = counting(monkeypatch, tiny_handle, plain)
    scores = generate_and_score(spec, tiny_handle, examples, prompts, tmp_path, options)
    assert second.calls == 2                                  # only the 4 unfinished examples, 2 per batch
    _, predictions = read_golds(tmp_path / PREDICTIONS_FILE)
    assert all(predictions[line["id"]] == postprocess(spec, line["output"]) for line in done)
    assert set(scores) == {"rouge-1", "rouge-L"} and (tmp_path / SCORES_FILE).is_file()

    third = counting(monkeypatch, tiny_handle, plain)
    generate_and_score(spec, tiny_handle, examples, prompts, tmp_path, {**options, "batch_size": 4})
    assert third.calls == 0                                   # batch size does not change the text
    for changed in ({"options": {**options, "max_new_tokens": 3}}, {"options": options, "adapter": "alice"},
                    {"options": options, "extra_key": {"beta": 0.1}}, {"options": options, "model_id": "ckpt-2"}):
        before = third.calls
        generate_outputs(tiny_handle, [e.id for e in examples], prompts, tmp_path, **changed)
        assert third.calls - before == 3, changed                 # everything is generated again
    assert len((tmp_path / GENERATIONS_FILE).read_text().splitlines()) == 6


def test_a_torn_last_line_is_reported_as_torn_and_the_rest_reused(tiny_handle, tmp_path, monkeypatch, sample, caplog):
    examples, prompts = sample
    ids = [e.id for e in examples]
    options = {"max_new_tokens": 4, "batch_size": 3}
    first = generate_outputs(tiny_handle, ids, prompts, tmp_path, options)
    log_path = tmp_path / GENERATIONS_FILE
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:4]) + lines[4][:25])   # the run died while writing line 5
    counter = counting(monkeypatch, tiny_handle)
    with caplog.at_level(logging.INFO, logger="lampkit.runtime"):
        again = generate_outputs(tiny_handle, ids, prompts, tmp_path, options)
    assert again == first and counter.calls == 1              # the 2 missing outputs in one batch
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "torn" in messages and "another model" not in messages
    assert all(json.loads(line) for line in log_path.read_text().splitlines())


def test_a_complete_last_line_without_newline_is_kept_and_closed(tiny_handle, tmp_path, monkeypatch, sample):
    examples, prompts = sample
    ids = [e.id for e in examples]
    options = {"max_new_tokens": 4, "batch_size": 6}
    generate_outputs(tiny_handle, ids, prompts, tmp_path, options)
    log_path = tmp_path / GENERATIONS_FILE
    log_path.write_text(log_path.read_text().rstrip("\n"))
    counter = counting(monkeypatch, tiny_handle)
    generate_outputs(tiny_handle, ids, prompts, tmp_path, options)
    assert counter.calls == 0 and log_path.read_text().endswith("}\n")


def test_prompts_file_holds_the_exact_text_fed_to_the_model(tiny_handle, tmp_path, sample):
    examples, prompts = sample
    ids = [e.id for e in examples][:2]
    generate_outputs(tiny_handle, ids, prompts[:2], tmp_path / "chat", {"max_new_tokens": 2})
    rows = [json.loads(line) for line in (tmp_path / "chat" / PROMPTS_FILE).read_text().splitlines()]
    template = tiny_handle.tokenizer.apply_chat_template([{"role": "user", "content": prompts[0]}], tokenize=False,
                                                         add_generation_prompt=True)
    assert [row["id"] for row in rows] == ids and rows[0]["text"] == template
    cut = {"max_new_tokens": 2, "chat": False, "max_input_tokens": 12, "truncation_side": "right"}
    generate_outputs(tiny_handle, ids, prompts[:2], tmp_path / "cut", cut)
    rows = [json.loads(line) for line in (tmp_path / "cut" / PROMPTS_FILE).read_text().splitlines()]
    assert all(row["num_tokens"] == 12 for row in rows)
    full = tiny_handle.tokenizer(prompts[0])["input_ids"]
    assert rows[0]["text"] == tiny_handle.tokenizer.decode(full[:12]) and len(full) > 12


def test_predictions_without_golds_are_written_but_not_scored(tiny_handle, tmp_path):
    spec = get_task("LaMP_4")
    examples = [Example(id="q1", input="Generate a headline for the following article: Markets fell.")]
    assert generate_and_score(spec, tiny_handle, examples, [examples[0].input], tmp_path, {"max_new_tokens": 3}) == {}
    assert read_golds(tmp_path / PREDICTIONS_FILE)[1].keys() == {"q1"}
    assert not (tmp_path / SCORES_FILE).exists()


def test_postprocess_keeps_one_line_for_short_tasks_only():
    text = "  \nFirst line\nsecond line \n"
    assert postprocess(get_task("LaMP_4"), text) == "First line"
    assert postprocess(get_task("LaMP_3"), "4\n\nbecause") == "4"
    assert postprocess(get_task("LongLaMP_2"), text) == "First line\nsecond line"


def test_the_backend_is_part_of_the_key_and_throughput_options_are_not():
    from types import SimpleNamespace

    hf, vllm = SimpleNamespace(weights_id="w", backend="hf"), SimpleNamespace(weights_id="w", backend="vllm")
    options = {"max_new_tokens": 8, "batch_size": 4, "progress": True}
    assert text_key(hf, options) != text_key(vllm, options)
    assert text_key(hf, options) == text_key(hf, {"max_new_tokens": 8, "batch_size": 64})


def test_a_methods_own_measures_go_into_scores_json(tmp_path):
    metrics = write_scores(tmp_path, "LaMP_4", {"a": "rain today"}, {"a": "rain"},
                           extra_metrics={"profile_word_share": 0.25})
    report = json.loads((tmp_path / SCORES_FILE).read_text())
    assert report["profile_word_share"] == 0.25 and report["rouge-1"] == metrics["rouge-1"] > 0


def test_fingerprint_is_canonical_and_tells_values_apart():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": (1, 2), "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2}) and len(fingerprint("x")) == 16
    assert fingerprint(b"raw") != fingerprint("raw") and len(fingerprint(b"raw", 24)) == 24
    assert fingerprint(Path("a/b")) == fingerprint("a/b")
