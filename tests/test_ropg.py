"""ropg: KD/RL losses on hand-worked numbers, the RL baseline and sampling, feedback values, the scorer's keys,
resume and shard merge, training candidates and a single-process train/resume/rank round trip."""
import functools
import json
import math

import pytest
import torch

from data.errors import InputError
from data.tasks import get_task
from ropg.losses import feedback_values, kd_loss, reinforce_loss, rl_loss, sample_items

# ----------------------------------------------------------------------------- losses


def test_kd_loss_is_cross_entropy_to_the_teacher_on_hand_worked_numbers():
    # s = [1, 0], g = [1, 0], T = 1: q = p = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941];
    # loss = -(0.731059 * ln 0.731059 + 0.268941 * ln 0.268941) = 0.731059*0.313262 + 0.268941*1.313262 = 0.582203.
    # (The reference's double softmax would give 0.612831 here.)
    loss = kd_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[True, True]]))
    assert loss.item() == pytest.approx(0.582203, abs=1e-5)


def test_kd_loss_temperature_masking_and_batch_mean():
    # T = 2, s = [2, 0] -> s/T = [1, 0], g = [0, 0] -> q = [0.5, 0.5]:
    # loss = 0.5*0.313262 + 0.5*1.313262 = 0.813262. A masked third slot with a huge score and gold changes nothing.
    row = kd_loss(torch.tensor([[2.0, 0.0, 9.0]]), torch.tensor([[0.0, 0.0, 9.0]]),
                  torch.tensor([[True, True, False]]), temperature=2.0)
    assert row.item() == pytest.approx(0.813262, abs=1e-5)
    # the batch mean with the first example's 0.582203
    both = kd_loss(torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 9.0]]), torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 9.0]]),
                   torch.tensor([[True, True, False], [True, True, False]]), temperature=2.0)
    # first row at T=2: s/T = [0.5, 0], g/T = [1, 0]: log p = [-0.474077, -0.974077], q = [0.731059, 0.268941]
    # loss = 0.731059*0.474077 + 0.268941*0.974077 = 0.608548
    assert both.item() == pytest.approx((0.608548 + 0.813262) / 2, abs=1e-5)


def test_reinforce_loss_rewards_against_the_first_candidate():
    scores = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])     # pi = [0.25, 0.75]
    gold = torch.tensor([[0.2, 0.5], [0.5, 0.2]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    # row 0 draws item 1: reward 0.5 - 0.2 = 0.3, -ln 0.75 * 0.3 = 0.086305; row 1 draws item 1: reward -0.3
    assert reinforce_loss(scores[:1], gold[:1], mask[:1], torch.tensor([1])).item() == pytest.approx(0.086305, abs=1e-5)
    assert reinforce_loss(scores[1:], gold[1:], mask[1:], torch.tensor([1])).item() == pytest.approx(-0.086305, abs=1e-5)
    # drawing the baseline itself earns nothing; the batch is averaged
    assert reinforce_loss(scores, gold, mask, torch.tensor([0, 0])).item() == 0.0
    assert reinforce_loss(scores, gold, mask, torch.tensor([1, 0])).item() == pytest.approx(0.086305 / 2, abs=1e-5)


def test_reinforce_gradient_raises_a_rewarded_item():
    scores = torch.zeros(1, 3, requires_grad=True)
    reinforce_loss(scores, torch.tensor([[0.0, 1.0, 0.0]]), torch.ones(1, 3, dtype=torch.bool),
                   torch.tensor([1])).backward()
    # d(-log pi_1 * 1)/ds = pi - onehot(1) = [1/3, -2/3, 1/3]: descending raises item 1's score
    assert scores.grad[0].tolist() == pytest.approx([1 / 3, -2 / 3, 1 / 3], abs=1e-6)


def test_sampling_follows_the_policy_and_never_draws_padding():
    generator = torch.Generator().manual_seed(0)
    scores = torch.tensor([[0.0, math.log(3.0), 100.0]]).repeat(4000, 1)
    mask = torch.tensor([[True, True, False]]).repeat(4000, 1)
    drawn = sample_items(scores, mask, generator)
    assert set(drawn.tolist()) <= {0, 1}
    assert (drawn == 1).float().mean().item() == pytest.approx(0.75, abs=0.03)
    # rl_loss = reinforce_loss on one seeded draw
    again = rl_loss(scores[:3], torch.tensor([[0.0, 1.0, 5.0]] * 3), mask[:3], torch.Generator().manual_seed(1))
    picks = sample_items(scores[:3], mask[:3], torch.Generator().manual_seed(1))
    expected = reinforce_loss(scores[:3], torch.tensor([[0.0, 1.0, 5.0]] * 3), mask[:3], picks)
    assert again.item() == pytest.approx(expected.item())


def test_feedback_values_normalise_mae_and_keep_higher_is_better_metrics():
    lamp3 = get_task("LaMP_3")
    # gold 4: w = max(|4-1|, |4-5|) = 3; MAE 0, 1, 3 -> 1, 2/3, 0 (the reference's `mae` spelling reads too)
    assert feedback_values(lamp3, [{"MAE": 0.0}, {"MAE": 1.0}, {"mae": 3.0}], "4") == pytest.approx([1, 2 / 3, 0])
    assert feedback_values(lamp3, [{"MAE": 2.0}], "1") == pytest.approx([0.5])          # w = 4
    assert feedback_values(get_task("LaMP_4"), [{"rouge-1": 0.25, "rouge-L": 0.1}], "x") == [0.25]
    with pytest.raises(InputError, match="rouge-1"):
        feedback_values(get_task("LaMP_4"), [{"rouge-L": 0.1}], "x", record="q1")


# ----------------------------------------------------------------------------- scorer

QUESTIONS = [
    {"id": "q1", "input": "Generate a headline for the following article: apples grow on trees in autumn",
     "profile": [{"id": "a", "title": "Cars", "text": "engines and wheels", "date": "2020-01-01"},
                 {"id": "b", "title": "Fruit", "text": "apples grow on trees", "date": "2020-01-02"},
                 {"id": "c", "title": "Season", "text": "leaves fall in autumn", "date": "2020-01-03"}]},
    {"id": "q2", "input": "Generate a headline for the following article: rivers flow into the sea",
     "profile": [{"id": "d", "title": "Sea", "text": "rivers flow into the sea", "date": "2021-01-01"},
                 {"id": "e", "title": "Town", "text": "a quiet town square", "date": "2021-01-02"},
                 {"id": "f", "title": "Rain", "text": "rain fills rivers", "date": "2021-01-03"}]},
]
OUTPUTS = {"task": "LaMP_4", "golds": [{"id": "q1", "output": "Apple season"}, {"id": "q2", "output": "Rivers"}]}


@pytest.fixture
def lamp4_files(tmp_path):
    questions, outputs = tmp_path / "questions.json", tmp_path / "outputs.json"
    questions.write_text(json.dumps(QUESTIONS))
    outputs.write_text(json.dumps(OUTPUTS))
    return questions, outputs


def score(model, questions, outputs, output_dir, *extra):
    from ropg.profile_item_utilization_scorer import main

    return main(["--task", "LaMP_4", "--model_name", str(model), "--train_data", str(questions), "--train_outputs",
                 str(outputs), "--profile_size", "2", "--output_dir", str(output_dir), "--max_new_tokens", "4",
                 "--batch_size", "3", *map(str, extra)])


def test_scorer_keys_bm25_top_n_with_metrics_output_and_rank(tiny_causal_lm, lamp4_files, tmp_path):
    from runtime.generation import postprocess

    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "fb") == 0
    scores = json.loads((tmp_path / "fb" / "scores_0_-1.json").read_text())
    # BM25 over "title text": q1's query shares "apples grow on trees" with b and "autumn" with c; q2's with d, then f
    assert list(scores) == ["q1-b", "q1-c", "q2-d", "q2-f"]
    assert [value["rank"] for value in scores.values()] == [0, 1, 0, 1]
    assert all(set(value) == {"rouge-1", "rouge-L", "output", "rank"} for value in scores.values())
    generations = [json.loads(line) for line in
                   (tmp_path / "fb" / "shard_0_-1" / "generations.jsonl").read_text().splitlines()]
    assert {g["id"]: postprocess(get_task("LaMP_4"), g["output"]) for g in generations} == \
        {key: value["output"] for key, value in scores.items()}
    # --is_ranked takes the file's order instead
    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "ranked", "--is_ranked") == 0
    assert list(json.loads((tmp_path / "ranked" / "scores_0_-1.json").read_text())) == ["q1-a", "q1-b", "q2-d", "q2-e"]


def test_scorer_resumes_without_generating_again(tiny_causal_lm, lamp4_files, tmp_path, monkeypatch):
    from lm.handle import ModelHandle

    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "fb") == 0
    first = (tmp_path / "fb" / "scores_0_-1.json").read_text()

    @functools.wraps(ModelHandle.generate)      # the runtime reads generate's defaults from its signature
    def refuse(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(ModelHandle, "generate", refuse)
    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "fb") == 0
    assert (tmp_path / "fb" / "scores_0_-1.json").read_text() == first


def test_shards_merge_into_the_single_run_file(tiny_causal_lm, lamp4_files, tmp_path, capsys):
    from ropg.merge_scores import main as merge

    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "all") == 0
    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "shards", "--start_index", 0, "--end_index", 3) == 0
    assert score(tiny_causal_lm, *lamp4_files, tmp_path / "shards", "--start_index", 3, "--end_index", -1) == 0
    assert list(json.loads((tmp_path / "shards" / "scores_0_3.json").read_text())) == ["q1-b", "q1-c", "q2-d"]
    assert merge(["--output_dir", str(tmp_path / "shards"), "--output", str(tmp_path / "merged" / "m.json")]) == 0
    merged = json.loads((tmp_path / "merged" / "m.json").read_text())
    assert merged == json.loads((tmp_path / "all" / "scores_0_-1.json").read_text())
    assert "merged 2 files, 4 (question, item) pairs" in capsys.readouterr().out


def test_merge_refuses_a_key_scored_differently(tmp_path):
    from ropg.merge_scores import main as merge

    (tmp_path / "scores_0_1.json").write_text(json.dumps({"q1-a": {"rouge-1": 0.5}}))
    (tmp_path / "scores_1_2.json").write_text(json.dumps({"q1-a": {"rouge-1": 0.25}}))
    with pytest.raises(InputError, match="q1-a.*scored differently"):
        merge(["--output_dir", str(tmp_path), "--output", str(tmp_path / "m.json")])
    assert not (tmp_path / "m.json").exists()


def test_scorer_bad_range_is_a_one_line_error(tiny_causal_lm, lamp4_files, tmp_path):
    with pytest.raises(InputError, match="--start_index 9"):
        score(tiny_causal_lm, *lamp4_files, tmp_path / "fb", "--start_index", 9)


# ----------------------------------------------------------------------------- training data


def test_training_candidates_follow_the_scorer_rank_and_skip_unscored_questions():
    from data.records import Example
    from ropg.training import training_questions

    spec = get_task("LaMP_4")
    examples = [Example(id=q["id"], input=q["input"], profile=q["profile"], target="t") for q in QUESTIONS]
    scores = {"q1-c": {"rouge-1": 0.5, "rank": 0}, "q1-a": {"rouge-1": 0.1, "rank": 1},
              "q1-b": {"rouge-1": 0.9, "rank": 2}}
    [question] = training_questions(spec, examples, scores, ctx_size=2, use_date=True)
    assert question.documents == ("Season leaves fall in autumn date: 2020-01-03", "Cars engines and wheels date: 2020-01-01")
    assert question.gold == (0.5, 0.1)
    assert question.query == "apples grow on trees in autumn"
    with pytest.raises(InputError, match="q1.*only 2 of the question's first 3 candidates"):
        training_questions(spec, examples, {k: scores[k] for k in ("q1-c", "q1-a")}, ctx_size=3, use_date=False)


def test_train_rl_resumes_and_its_checkpoint_ranks_profiles(tiny_encoder, lamp4_files, tmp_path, capsys):
    from lamp_rag.rank_profiles import main as rank
    from ropg.train_rl import main as train_rl

    questions, outputs = lamp4_files
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"q1-b": {"rouge-1": 0.2, "rank": 0}, "q1-c": {"rouge-1": 0.6, "rank": 1},
                                  "q2-d": {"rouge-1": 0.5, "rank": 0}, "q2-f": {"rouge-1": 0.0, "rank": 1}}))
    common = ["--do_train", "--task", "LaMP_4", "--train_data", str(questions), "--train_outputs", str(outputs),
              "--scores_path", str(scores), "--name", "rl", "--ctx_size", "2", "--model_path", str(tiny_encoder),
              "--checkpoint_dir", str(tmp_path / "ckpt"), "--lr", "1e-3", "--device", "cpu"]
    assert train_rl([*common, "--total_steps", "2"]) == 0
    latest = tmp_path / "ckpt" / "rl" / "checkpoint" / "latest"
    assert latest.resolve().name == "step-2"
    # training.json: every weight of the encoder is trained (the leaderboard's trainable parameters)
    from transformers import AutoModel

    encoder_size = sum(p.numel() for p in AutoModel.from_pretrained(tiny_encoder).parameters())
    training = json.loads((tmp_path / "ckpt" / "rl" / "training.json").read_text())
    assert training == {"trainable_parameters": encoder_size}
    assert train_rl([*common, "--total_steps", "3"]) == 0
    assert latest.resolve().name == "step-3"
    assert torch.load(latest / "optimizer.pth.tar", weights_only=False)["step"] == 3
    assert "resumed" in (tmp_path / "ckpt" / "rl" / "run.log").read_text()
    assert f"checkpoint: {latest.resolve()}" in capsys.readouterr().out
    ranking = tmp_path / "rank" / "ranking.json"
    assert rank(["--task", "LaMP_4", "--ranker", "contriever", "--contriever_checkpoint", str(latest),
                 "--input_data_addr", str(questions), "--output_ranking_addr", str(ranking)]) == 0
    assert sorted(json.loads(ranking.read_text())["q1"]) == ["a", "b", "c"]


def test_train_kd_needs_do_train_and_has_temperature_rl_does_not(tmp_path):
    from ropg.train_kd import main as train_kd
    from ropg.train_rl import main as train_rl

    base = ["--task", "LaMP_4", "--train_data", "q.json", "--scores_path", "s.json", "--name", "x",
            "--checkpoint_dir", str(tmp_path)]
    with pytest.raises(InputError, match="--do_train"):
        train_kd([*base, "--temperature", "2"])
    with pytest.raises(InputError, match="temperature"):
        train_rl([*base, "--do_train", "--temperature", "2"])


def test_batch_scores_are_the_encoders_dot_products_per_question(tiny_encoder):
    from lm import load_encoder
    from ropg.training import Question, batch_scores, collate

    encoder = load_encoder(str(tiny_encoder), device="cpu")
    questions = [Question("rivers and seas", ("the sea", "a town", "rain"), (0.1, 0.2, 0.3)),
                 Question("apples", ("fruit trees",), (0.5,))]
    input_ids, attention_mask, gold, mask = collate(questions, encoder.tokenizer, 64, 64)
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert gold.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.0, 0.0])
    with torch.no_grad():
        scores = batch_scores(encoder.model.eval(), input_ids, attention_mask, mask)
    for row, question in enumerate(questions):
        vectors = encoder.encode([question.query, *question.documents])
        expected = (vectors[1:] @ vectors[0]).tolist()
        assert scores[row, :len(expected)].tolist() == pytest.approx(expected, abs=1e-4)


def test_feedback_agreement_scores_each_rankers_top1_among_the_candidates(lamp4_files, tmp_path, capsys):
    from ropg.feedback_agreement import main as agreement

    questions, outputs = lamp4_files
    scores = tmp_path / "scores.json"
    # candidates: q1 b (BM25 top-1), c (newest); q2 d (BM25 top-1), f (newest)
    scores.write_text(json.dumps({"q1-b": {"rouge-1": 0.2, "rank": 0}, "q1-c": {"rouge-1": 0.6, "rank": 1},
                                  "q2-d": {"rouge-1": 0.5, "rank": 0}, "q2-f": {"rouge-1": 0.0, "rank": 1}}))
    out = tmp_path / "agree" / "agreement.json"
    assert agreement(["--task", "LaMP_4", "--data", str(questions), "--outputs", str(outputs),
                      "--scores_path", str(scores), "--output", str(out)]) == 0
    table = json.loads(out.read_text())["top1_feedback"]
    assert table["bm25"] == pytest.approx((0.2 + 0.5) / 2)
    assert table["recency"] == pytest.approx((0.6 + 0.0) / 2)
    assert table["oracle"] == pytest.approx((0.6 + 0.5) / 2)
    assert table["candidates mean"] == pytest.approx((0.4 + 0.25) / 2)
    assert "| bm25 | 0.3500 |" in capsys.readouterr().out
