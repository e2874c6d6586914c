"""RSPG: the selector's data from hand-written feedback files, its loss, its training, Pre vs Post inputs,
and the validation files of rspg.rspg."""
import json
import math
from pathlib import Path

import pytest
import torch

from data.cli import run
from data.tasks import get_task
from rspg import create_data, rspg
from rspg.selector import (candidate_texts, encode_candidates, label_targets, load_selector, select,
                           selection_loss)
from rspg.training import TrainSettings, step_batches, train


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- create_data

QUESTIONS = [{"id": "q2", "input": "Generate a headline for the following article: cats nap", "user_id": "u2",
              "profile": [{"id": "p1", "title": "t", "text": "x"}]},
             {"id": "q1", "input": "Generate a headline for the following article: dogs run", "user_id": "u1",
              "profile": [{"id": "p2", "title": "u", "text": "y"}]}]
GOLDS = {"task": "LaMP_4", "golds": [{"id": "q1", "output": "dogs run fast"}, {"id": "q2", "output": "cats nap"}]}


def feedback(values: dict) -> dict:
    """{id: {"metric", "output", "input"}} from {id: (rouge-L, output, prompt)}, the scorer's per-question shape."""
    return {qid: {"metric": {"rouge-1": round(rouge_l + 0.1, 3), "rouge-L": rouge_l}, "output": out, "input": prompt}
            for qid, (rouge_l, out, prompt) in values.items()}


@pytest.fixture
def three_retrievers(tmp_path):
    # The scorer's feedback.json in two folders, the reference's per-question scores.json in the third.
    write(tmp_path / "none" / "feedback.json", feedback({"q1": (0.2, "dogs", "P none 1"), "q2": (0.0, "x", "P none 2")}))
    write(tmp_path / "bm25" / "scores.json", feedback({"q1": (0.5, "dogs run", "P bm25 1"),
                                                       "q2": (1.0, "cats nap", "P bm25 2")}))
    write(tmp_path / "recency" / "feedback.json", feedback({"q1": (0.9, "dogs run fast", "P rec 1"),
                                                            "q2": (0.3, "cats", "P rec 2")}))
    write(tmp_path / "questions.json", QUESTIONS)
    write(tmp_path / "outputs.json", GOLDS)
    return tmp_path


def make_data(folder: Path, *extra: str, metric: str = "rouge-l") -> int:
    return run(create_data.main, ["--retrivers_data_addr", *(str(folder / n) for n in ("none", "bm25", "recency")),
                                  "--task_inputs_addr", str(folder / "questions.json"),
                                  "--task_outputs_addr", str(folder / "outputs.json"),
                                  "--output_dataset_addr", str(folder / "out" / "data.json"), "--metric", metric,
                                  *extra])


def test_create_data_labels_outputs_inputs_for_three_retrievers(three_retrievers, capsys):
    assert make_data(three_retrievers) == 0          # the README's "rouge-l" spelling
    text = (three_retrievers / "out" / "data.json").read_text()
    assert text.startswith("[\n    {")               # indent 4, as the reference writes it
    records = json.loads(text)
    assert [r["id"] for r in records] == ["q2", "q1"]   # questions-file order
    q2, q1 = records
    assert q1["labels"] == [0.2, 0.5, 0.9] and q2["labels"] == [0.0, 1.0, 0.3]   # rouge-L, CLI order
    assert q1["outputs"] == ["dogs", "dogs run", "dogs run fast"]
    assert q2["inputs"] == ["P none 2", "P bm25 2", "P rec 2"]
    assert q1["gold"] == "dogs run fast" and q2["input"] == QUESTIONS[0]["input"]
    assert q1["retrievers"] == ["none", "bm25", "recency"] and q1["metric"] == "rouge-L"
    assert "profile" not in q1
    assert (three_retrievers / "out" / "data.json.config.json").is_file()
    assert make_data(three_retrievers, metric="rouge-1") == 0
    assert json.loads((three_retrievers / "out" / "data.json").read_text())[1]["labels"] == [0.3, 0.6, 1.0]


def test_create_data_bad_input_is_one_line(three_retrievers, capsys):
    assert make_data(three_retrievers, metric="bleu") == 2
    assert "--metric 'bleu'" in capsys.readouterr().err
    write(three_retrievers / "recency" / "feedback.json", feedback({"q1": (0.9, "a", "b")}))
    assert make_data(three_retrievers) == 2
    err = capsys.readouterr().err.strip()
    assert "recency" in err and "'q2'" in err and "\n" not in err
    assert not (three_retrievers / "out" / "data.json").exists()


# ----------------------------------------------------------------------------- loss and labels

def test_selection_loss_on_hand_worked_numbers():
    # q = softmax([0, ln 3]) = (1/4, 3/4), p = softmax([0, 0]) = (1/2, 1/2):
    # KL(p || q) = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3)
    logits, targets = torch.tensor([[0.0, math.log(3)]]), torch.tensor([[0.0, 0.0]])
    assert selection_loss(logits, targets).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    # T = 2 divides the logits: q = (1, sqrt 3) / (1 + sqrt 3)
    expected_t2 = 0.5 * math.log((1 + math.sqrt(3)) / 2) + 0.5 * math.log((1 + math.sqrt(3)) / (2 * math.sqrt(3)))
    assert selection_loss(logits, targets, temperature=2.0).item() == pytest.approx(expected_t2, abs=1e-6)
    # "batchmean": a second, matching row (loss 0) halves the mean
    two = selection_loss(torch.tensor([[0.0, math.log(3)], [1.0, 2.0]]), torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    assert two.item() == pytest.approx(0.25 * math.log(4 / 3), abs=1e-6)


def test_error_metric_labels_become_one_minus_error_over_worst_error():
    records = [{"metric": "MAE", "gold": "4", "labels": [0.0, 1.0, 3.0]},
               {"metric": "MAE", "gold": "1", "labels": [4.0, 2.0, 0.0]}]
    # gold 4: worst error max(|4-1|, |4-5|) = 3; gold 1: 4
    assert torch.allclose(label_targets(records, get_task("LaMP_3")), torch.tensor([[1, 2 / 3, 0], [0, 0.5, 1]]))
    rouge = [{"metric": "rouge-1", "gold": "a", "labels": [0.2, 0.7]}]
    assert torch.allclose(label_targets(rouge, get_task("LaMP_4")), torch.tensor([[0.2, 0.7]]))


# ----------------------------------------------------------------------------- selector

def selection_records(n: int) -> list[dict]:
    """Three retrievers; the one whose prompt mentions a vineyard always has the best label."""
    topics = ["the kitchen tested the recipe", "the noodle expanded the dumpling", "the vineyard tested the olive"]
    records = []
    for i in range(n):
        order = [(i + shift) % 3 for shift in range(3)]
        records.append({"id": f"q{i}", "input": "x", "gold": "olive", "metric": "rouge-1",
                        "retrievers": ["a", "b", "c"], "inputs": [topics[t] for t in order],
                        "outputs": [f"Output {t}" for t in order],
                        "labels": [1.0 if t == 2 else 0.0 for t in order]})
    return records


def full_loss(selector, records, kind):
    with torch.no_grad():
        ids, mask, count = encode_candidates(selector.tokenizer, records, kind, selector.max_length)
        return selection_loss(selector(ids, mask, count), label_targets(records, get_task("LaMP_4"))).item()


@pytest.mark.parametrize("kind", ["Pre", "Post"])
def test_selector_loss_falls_on_a_tiny_encoder(tiny_encoder, tmp_path, kind):
    selector = load_selector(str(tiny_encoder), device="cpu")
    records = selection_records(6)
    before = full_loss(selector, records, kind)
    losses = train(selector, records, get_task("LaMP_4"),
                   TrainSettings(rspg_type=kind, learning_rate=3e-3, total_steps=12, batch_size=2), tmp_path,
                   progress=False)
    assert len(losses) == 12
    after = full_loss(selector, records, kind)
    assert after < 0.5 * before
    assert select(selector, records, kind, progress=False) == [(2 - i) % 3 for i in range(6)]


def test_pre_reads_the_lowercased_prompt_post_adds_the_output_kept_when_the_prompt_is_cut(tiny_encoder):
    selector = load_selector(str(tiny_encoder), device="cpu")
    record = {"inputs": ["The Kitchen TESTED " + "the recipe " * 40], "outputs": ["Olive"]}
    assert candidate_texts(record, "Pre") == [record["inputs"][0].lower()]
    assert candidate_texts(record, "Post") == [(record["inputs"][0].lower(), "Olive")]
    tokenizer = selector.tokenizer
    olive = tokenizer("Olive", add_special_tokens=False)["input_ids"]
    pre, _, _ = encode_candidates(tokenizer, [record], "Pre", 24)
    post, _, _ = encode_candidates(tokenizer, [record], "Post", 24)
    assert pre.shape[1] == post.shape[1] == 24
    post_ids, pre_ids = post[0].tolist(), pre[0].tolist()
    assert any(post_ids[i:i + len(olive)] == olive for i in range(len(post_ids)))   # output survives the cut
    assert not any(pre_ids[i:i + len(olive)] == olive for i in range(len(pre_ids)))
    assert pre_ids[:3] == tokenizer("the kitchen tested", add_special_tokens=False)["input_ids"][:3]


def test_interrupted_training_resumes_where_it_was_saved(tiny_encoder, tmp_path, monkeypatch):
    import rspg.training as training

    records, spec = selection_records(6), get_task("LaMP_4")
    settings = TrainSettings(rspg_type="Pre", learning_rate=3e-3, total_steps=5, batch_size=2, save_freq=2)
    whole = train(load_selector(str(tiny_encoder), device="cpu"), records, spec, settings, tmp_path / "a",
                  progress=False)

    calls = []
    real_loss = training.selection_loss

    def interrupt_at_step_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4 and interrupt:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    interrupt = True

    monkeypatch.setattr(training, "selection_loss", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(load_selector(str(tiny_encoder), device="cpu"), records, spec, settings, tmp_path / "b",
              progress=False)
    assert torch.load(tmp_path / "b" / "train_state.pt", weights_only=False)["step"] == 2
    calls.clear()
    interrupt = False
    resumed = train(load_selector(str(tiny_encoder), device="cpu"), records, spec, settings, tmp_path / "b",
                    progress=False)
    assert len(calls) == 3                                            # steps 3 to 5 only
    assert resumed == pytest.approx(whole, rel=1e-5)
    other = TrainSettings(rspg_type="Pre", learning_rate=1e-3, total_steps=5, batch_size=2, save_freq=2)
    assert len(train(load_selector(str(tiny_encoder), device="cpu"), records, spec, other, tmp_path / "b",
                     progress=False)) == 5                                # other settings start over


def test_training_batches_depend_only_on_seed_and_step():
    settings = TrainSettings(rspg_type="Pre", batch_size=2)
    first = [step_batches(5, settings, 0, 1, step) for step in range(6)]
    assert first == [step_batches(5, settings, 0, 1, step) for step in range(6)]
    assert sorted(sum(first[:3], []))[:5] == [0, 1, 2, 3, 4]        # an epoch covers every record
    ranks = [step_batches(5, settings, rank, 2, 0) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2 and not set(ranks[0]) & set(ranks[1])


# ----------------------------------------------------------------------------- rspg.rspg files

def test_rspg_writes_final_preds_in_gold_format_and_the_table(tiny_encoder, tmp_path, capsys):
    records = selection_records(6)
    write(tmp_path / "train.json", records)
    write(tmp_path / "dev.json", records[:4])
    write(tmp_path / "golds.json", {"task": "LaMP_4", "golds": [{"id": f"q{i}", "output": "Output 2"}
                                                                for i in range(6)]})
    common = ["--val_data", tmp_path / "dev.json", "--val_lamp_golds", tmp_path / "golds.json", "--task", "LaMP_4",
              "--checkpoint_dir", tmp_path / "runs", "--encoder", tiny_encoder, "--rspg_type", "Post"]
    argv = ["--do_train", "--train_data", tmp_path / "train.json", "--name", "post", "--total_steps", 12,
            "--learning_rate", 3e-3, "--per_gpu_batch_size", 2, *common]
    assert run(rspg.main, [str(a) for a in argv]) == 0
    run_dir = tmp_path / "runs" / "post"
    preds = json.loads((run_dir / "final_preds.json").read_text())
    assert preds["task"] == "LaMP_4" and [g["id"] for g in preds["golds"]] == ["q0", "q1", "q2", "q3"]
    for gold, record in zip(preds["golds"], records):
        assert set(gold) == {"id", "output", "index"} and gold["output"] == record["outputs"][gold["index"]]
    results = {row["name"]: row for row in json.loads((run_dir / "results.json").read_text())}
    assert set(results) == {"RSPG-Post (selected)", "oracle", "a", "b", "c"}
    assert results["oracle"]["rouge-1"] == 1.0 and results["oracle"]["best_pick"] == 1.0
    assert all(results[name]["rouge-1"] < 1.0 for name in "abc")
    table = (run_dir / "table.md").read_text()
    assert "| RSPG-Post (selected) |" in table and "| oracle |" in table
    assert json.loads((run_dir / "scores.json").read_text())["num_examples"] == 4
    # training.json: the encoder and its scoring head are all trained (the leaderboard's trainable parameters)
    from rspg.selector import load_selector

    selector_size = sum(p.numel() for p in load_selector(str(run_dir / "model"), 512, "cpu").parameters())
    assert json.loads((run_dir / "training.json").read_text()) == {"trainable_parameters": selector_size}

    again = ["--do_validation", "--model_path", run_dir / "model", "--name", "again", *common]
    assert run(rspg.main, [str(a) for a in again]) == 0
    assert json.loads((tmp_path / "runs" / "again" / "final_preds.json").read_text()) == preds
    wrong = [str(a) for a in again]
    wrong[wrong.index("Post")] = "Pre"
    assert run(rspg.main, wrong) == 2
    assert "a Post selector" in capsys.readouterr().err


# ----------------------------------------------------------------------------- retriever_utilization_scorer

def test_scorer_writes_per_question_feedback_beside_the_run_folder(tiny_causal_lm, tmp_path):
    from eval.metrics import per_example_scores
    from rspg import retriever_utilization_scorer

    sample = Path(__file__).resolve().parent.parent / "data" / "sample" / "LaMP_4"
    out = tmp_path / "bm25_2"
    argv = ["--task", "LaMP_4", "--model_name", tiny_causal_lm, "--data_addr", sample / "dev_questions.json",
            "--data_outputs", sample / "dev_outputs.json", "--limit", 3, "--max_new_tokens", 5, "--use_profile",
            "--retriever", "bm25", "--num_retrieved", 2, "--output_dir", out]
    assert run(retriever_utilization_scorer.main, [str(a) for a in argv]) == 0
    feedback = json.loads((out / "feedback.json").read_text())
    predictions = {g["id"]: g["output"] for g in json.loads((out / "predictions.json").read_text())["golds"]}
    golds = {g["id"]: g["output"] for g in json.loads((sample / "dev_outputs.json").read_text())["golds"]}
    assert list(feedback) == list(predictions) and len(feedback) == 3
    ids = list(feedback)
    expected = per_example_scores("LaMP_4", [predictions[i] for i in ids], [golds[i] for i in ids])
    for row, qid in enumerate(ids):
        assert feedback[qid]["output"] == predictions[qid]
        assert feedback[qid]["metric"] == {name: values[row] for name, values in expected.items()}
        assert feedback[qid]["input"].count("user: ") == 3     # two retrieved items + the question, as chat turns
    assert json.loads((out / "scores.json").read_text())["num_examples"] == 3


def test_rspg_bad_input_is_one_line(tmp_path, capsys):
    write(tmp_path / "train.json", {"not": "a list"})
    base = ["--rspg_type", "Pre", "--task", "LaMP_4", "--name", "x", "--checkpoint_dir", str(tmp_path / "runs")]
    assert run(rspg.main, ["--do_validation", *base]) == 2
    assert "--model_path" in capsys.readouterr().err
    assert run(rspg.main, ["--do_train", "--train_data", str(tmp_path / "train.json"), *base]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.json" in err and "\n" not in err
    records = selection_records(2)
    records[1]["labels"] = [1.0]
    write(tmp_path / "train.json", records)
    assert run(rspg.main, ["--do_train", "--train_data", str(tmp_path / "train.json"), *base]) == 2
    assert "record 'q1'" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "x").exists()
