"""The user-profile role study: selection, guard, BM25 variant, k/target, orders, ablation prompts, CLI."""
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.cli import run
from data.loaders import load_examples
from data.errors import InputError
from data.prompts import build_study_prompt
from data.records import Example
from data.tasks import get_task
from eval.scoring import metric_values
from lamp_rag import profile_study
from lamp_rag.retrieval import map_term_statistics
from lamp_rag.study import (StudySelector, StudySettings, apply_order, guarded_profile,
                            middle_order, prompt_template, resolve_k, result_dir, study_bm25_scores,
                            study_document, study_prompts, study_query, study_task, target_window)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "data" / "sample"
HEADLINE = "Generate a headline for the following article: "


def headline_example(qid: str, article: str, items: list[tuple[str, str]]) -> Example:
    """A LaMP_4 question; items are (text, title) pairs with ids i0, i1, ..."""
    return Example(id=qid, input=HEADLINE + article, target="gold",
                   profile=[{"id": f"i{i}", "text": text, "title": title} for i, (text, title) in enumerate(items)])


def ids(items) -> list[str]:
    return [item["id"] for item in items]


# ----------------------------------------------------------------------------- orders, k, target

def test_middle_order_puts_the_best_item_in_the_centre():
    assert middle_order([0, 1, 2, 3, 4]) == [3, 1, 0, 2, 4]
    assert middle_order([0, 1, 2, 3]) == [3, 1, 0, 2]
    assert middle_order([0, 1, 2]) == [1, 0, 2]
    assert middle_order([0]) == [0] and middle_order([]) == []


def test_start_end_and_seeded_random_orders():
    items = list(range(6))
    assert apply_order(items, "start", "both", 1) == items
    assert apply_order(items, "end", "both", 1) == items[::-1]
    expected = list(items)
    random.Random(7).shuffle(expected)
    assert apply_order(items, "random", "both", 7) == expected != items
    assert apply_order(list("abcdef"), "random", "both", 7) == [list("abcdef")[i] for i in expected]
    assert apply_order(items, "random", "only_output", 7) == items   # the ablation prompts ignore it


def test_k_fraction_and_retrieval_target_windows():
    assert resolve_k(0.5, 7) == 3 and resolve_k(2, 7) == 2 and resolve_k(2.9, 7) == 2 and resolve_k(0, 7) == 0
    ranked = list(range(10))
    assert target_window(ranked, 3, 0) == [0, 1, 2]
    assert target_window(ranked, 3, 2) == [2, 3, 4]                 # ranks [t, t + k)
    assert target_window(ranked, 3, 0.5) == [5, 6, 7]               # t = int(10 * 0.5)
    assert target_window(ranked, 3, 7) == []                        # t + k reaches the end: nothing
    assert target_window(ranked, 3, 25) == []


# ----------------------------------------------------------------------------- guard, query, documents, BM25

def test_leakage_guard_removes_the_first_duplicate_of_the_question():
    spec = get_task("LaMP_4")
    example = headline_example("q", "Stocks rose.", [("Other", "a"), ("Stocks rose.", "b"), ("Stocks rose.", "c")])
    assert ids(guarded_profile(spec, example.input, example.profile)) == ["i0", "i2"]
    citation = get_task("LaMP_1")
    question = citation.input_template.format(title="My paper", ref1="Ref one", ref2="Ref two")
    profile = [{"id": "p0", "title": "Ref one", "abstract": "x"}, {"id": "p1", "title": "My paper", "abstract": "y"}]
    assert ids(guarded_profile(citation, question, profile)) == ["p0"]    # the paper's own title, not a reference
    assert study_query(citation, question) == "My paper Ref one Ref two"  # words of ALL quoted strings
    tweet = get_task("LaMP_7")
    question = tweet.input_template.format(text="sunny day!")
    assert ids(guarded_profile(tweet, question, [{"id": "t0", "text": "sunny day!"}, {"id": "t1", "text": "x"}])) \
        == ["t1"]


def test_documents_per_ablation():
    spec = get_task("LaMP_4")
    item = {"id": "1", "text": "the body", "title": "The Title"}
    assert study_document(spec, item, "both") == "the body The Title"
    assert study_document(spec, item, "only_output") == "the body The Title"
    assert study_document(spec, item, "decouple") == "the body"
    assert study_document(get_task("LaMP_7"), {"id": "1", "text": "a tweet"}, "both") == "a tweet"


def test_study_bm25_matches_the_hand_worked_formula():
    [scores] = map_term_statistics(["a c a"], [["a b", "a c c", "d"]], study_bm25_scores)
    # N = 3, avgdl = 2; a: df 2, tf_q 2; c: df 1, tf_q 1; idf = ln((N - df + .5) / (df + .5) + 1)
    idf_a, idf_c = math.log(1.5 / 2.5 + 1), math.log(2.5 / 1.5 + 1)
    norm = [1.5 * (0.25 + 0.75 * length / 2) for length in (2, 3, 1)]
    expected = [idf_a * 1 * 2.5 * 2 / (1 + norm[0]),
                idf_a * 1 * 2.5 * 2 / (1 + norm[1]) + idf_c * 2 * 2.5 * 1 / (2 + norm[1]),
                0.0]
    assert np.allclose(scores, expected, rtol=1e-12)


def test_bm25_selection_guard_ties_and_decouple():
    spec = get_task("LaMP_4")
    example = headline_example("q", "market news today", [
        ("sports", "market crash"),          # the title matches: only counted with both fields
        ("market news", "other"),            # the text matches
        ("market news today", "leak"),       # the question itself: removed by the guard
        ("nothing", "zzz"), ("nothing", "zzz")])
    both = StudySelector(spec, StudySettings(k=4), [example], "dev").select([example])[0]
    assert ids(both) == ["i1", "i0", "i3", "i4"]                      # zero-score ties keep profile order
    decouple = StudySelector(spec, StudySettings(k=4, ablation="decouple"), [example], "dev").select([example])[0]
    assert ids(decouple) == ["i1", "i0", "i3", "i4"] and decouple[0]["text"] == "market news"
    only_market = headline_example("q", "crash", [("market news", "other"), ("sports", "crash")])
    assert ids(StudySelector(spec, StudySettings(k=1), [only_market], "dev").select([only_market])[0]) == ["i1"]
    assert StudySelector(spec, StudySettings(k=1, ablation="decouple"), [only_market], "dev") \
        .select([only_market])[0][0]["id"] == "i0"                   # decouple ignores the title's match
    half = StudySelector(spec, StudySettings(k=0.5), [example], "dev").select([example])[0]
    assert ids(half) == ["i1", "i0"]                                  # int(0.5 * 4 guarded items)
    window = StudySelector(spec, StudySettings(k=1, target=1), [example], "dev").select([example])[0]
    assert ids(window) == ["i0"]


# ----------------------------------------------------------------------------- cross-user and Mixed

def sample_split(split: str, limit: int | None = None):
    return load_examples(SAMPLE / "LaMP_4" / f"{split}_questions.json", SAMPLE / "LaMP_4" / f"{split}_outputs.json",
                         task="LaMP_4", limit=limit)


def test_full_random_draws_users_by_profile_size_deterministically():
    spec = get_task("LaMP_4")
    small = headline_example("small", "x", [("s", "s")])
    big = headline_example("big", "y", [(f"b{i}", "b") for i in range(9)])
    questions = [headline_example(f"q{i}", "z", [("own", "own")]) for i in range(3000)]
    settings = StudySettings(retrieval_id="Full_Random", k=1, random_seed=5)
    selected = StudySelector(spec, settings, [small, big], "dev").select(questions)
    share = sum(items[0]["text"].startswith("b") for items in selected) / len(selected)
    assert 0.87 < share < 0.93                                       # weight 9 / (9 + 1)
    assert StudySelector(spec, settings, [small, big], "dev").select(questions) == selected
    other_seed = StudySettings(retrieval_id="Full_Random", k=1, random_seed=6)
    assert StudySelector(spec, other_seed, [small, big], "dev").select(questions) != selected
    assert StudySelector(spec, settings, [small, big], "train").select(questions) != selected   # own stream


def test_random_and_ranbm25_draw_from_the_right_profiles():
    spec = get_task("LaMP_4")
    dev, train = sample_split("dev", 6), sample_split("train", 6)
    pool = train + dev
    own = StudySelector(spec, StudySettings(retrieval_id="Random", k=3), pool, "dev").select(dev)
    assert all(len(items) == 3 and {i["id"] for i in items} <= {i["id"] for i in e.profile}
               for e, items in zip(dev, own))
    pooled_ids = {item["id"] for example in pool for item in example.profile}
    ranbm25 = StudySelector(spec, StudySettings(retrieval_id="RanBM25", k=2, pseudo_profile_size=5), pool, "dev")
    assert ranbm25.pseudo_size == 5
    assert all(len(items) == 2 and {i["id"] for i in items} <= pooled_ids for items in ranbm25.select(dev))
    assert StudySelector(spec, StudySettings(retrieval_id="RanBM25"), pool, "dev").pseudo_size == 287  # spec A4's AVG
    # A task without the study's size uses the mean profile size of the pool.
    assert StudySelector(get_task("LongLaMP_2"), StudySettings(retrieval_id="RanBM25"), pool, "dev").pseudo_size == \
        round(sum(len(example.profile) for example in pool) / len(pool))


def test_mixed_zips_items_of_one_retrieval_with_outputs_of_another():
    spec = get_task("LaMP_4")
    dev = sample_split("dev", 6)
    mixed = StudySettings(retrieval_id="Mixed", input_retrieval_id="BM25", output_retrieval_id="Random", k=2, random_seed=2)
    selected = StudySelector(spec, mixed, dev, "dev").select(dev)
    inputs = StudySelector(spec, StudySettings(k=2), dev, "dev").select(dev)
    outputs = StudySelector(spec, StudySettings(retrieval_id="Random", k=2, random_seed=2), dev, "dev").select(dev)
    for items, ins, outs in zip(selected, inputs, outputs):
        assert len(items) == 2
        assert [item["text"] for item in items] == [item["text"] for item in ins]
        assert [item["title"] for item in items] == [item["title"] for item in outs]
        assert ids(items) == ids(ins)


# ----------------------------------------------------------------------------- prompts and folders

class WordTokenizer:
    """One token per whitespace-separated word plus a closing EOS (id 0), like T5's: lengths are countable."""

    def __init__(self):
        self.words = ["</s>"]

    def __call__(self, text, add_special_tokens=True, truncation=False, max_length=None):
        ids = []
        for word in text.split():
            if word not in self.words:
                self.words.append(word)
            ids.append(self.words.index(word))
        ids += [0] if add_special_tokens else []
        return {"input_ids": ids[:max_length] if truncation else ids}

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(self.words[i] for i in ids if i or not skip_special_tokens)


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(1, n + 1))


def test_study_both_prompt_gives_every_item_its_share_of_the_profile_budget():
    spec, tokenizer = get_task("LaMP_4"), WordTokenizer()
    question = HEADLINE + "news"
    items = [{"id": "1", "text": words(10), "title": "T1"}, {"id": "2", "text": words(3, "s"), "title": "T2"}]
    assert prompt_template(spec, "both") == "study_both"
    # Budget per item (40 - 10 - 5 reserved for LaMP_4) / 2 = 12.5 tokens. Item 1 has 4 + 10 words + EOS = 15:
    # its text loses ceil(2.5) + 1 = 4 of its 11 tokens (EOS included); item 2 (8 tokens) is kept whole.
    prompt = build_study_prompt(spec, question, items, tokenizer, "study_both", input_max_length=40, task_max_length=10)
    assert prompt == f'"T1" is the title for"{words(7)}", and "T2" is the title for"{words(3, "s")}". {question}'
    assert build_study_prompt(spec, question, [], tokenizer, "study_both") == question
    # LaMP_7 reserves 10 tokens (budget 30 - 10 - 10 = 10; 12 words + EOS lose 3 + 1) and wraps differently;
    # LaMP_1 puts the titles after the paper's quoted title.
    tweet = get_task("LaMP_7")
    assert build_study_prompt(tweet, "Paraphrase: x", [{"id": "1", "text": words(12)}], WordTokenizer(), "study_both",
                              input_max_length=30, task_max_length=10) == \
        f'"{words(9)}" are written by a person. Following the given patterns Paraphrase: x'
    citation = get_task("LaMP_1")
    question = citation.input_template.format(title="My paper", ref1="R1", ref2="R2")
    assert build_study_prompt(citation, question, [{"id": "p", "title": "Old", "abstract": "a"}], WordTokenizer(),
                              "study_both") == question.replace('title "My paper"', 'title "My paper" "Old"')


def test_study_lamp3_budget_shrinks_with_a_long_input():
    spec, tokenizer = get_task("LaMP_3"), WordTokenizer()
    item = {"id": "1", "text": words(20), "score": "5"}
    short = build_study_prompt(spec, "review: ok", [item], tokenizer, "study_both", 40, 10)
    assert short.startswith(f'5 is the score for"{words(20)}"')                   # 25 tokens <= 30
    long_input = "review: " + words(19, "r")                                          # 21 tokens with EOS
    # Budget (40 - max(10, 21)) / 1 = 19: the item (25 tokens) loses 6 + 1 of its 21 text tokens.
    assert build_study_prompt(spec, long_input, [item], tokenizer, "study_both", 40, 10) == \
        f'5 is the score for"{words(14)}". {long_input}'


def test_study_only_output_cuts_the_block_of_outputs_as_a_whole():
    spec, tokenizer = get_task("LaMP_2"), WordTokenizer()
    items = [{"id": str(i), "description": "d", "tag": f"tag {i}"} for i in range(10)]
    question = "Which tag? description: a film"
    # Budget 16 - 6 = 10 tokens; the wording "the tag for the previous movies are. " takes 7 words, so the block
    # '"tag 0""tag 1""tag ... 9"' (11 words + EOS = 12 tokens, 9 too many) keeps 12 - 9 - 1 = 2 tokens.
    prompt = build_study_prompt(spec, question, items, tokenizer, "study_only_output", 16, 6)
    assert prompt == f'the tag for the previous movies are"tag 0""tag. {question}'


@pytest.mark.parametrize("k", [20, 40])
def test_question_survives_every_only_output_prompt(k, tiny_tokenizer):
    """40 profile titles are far longer than the profile budget: the block is cut, the question stays inside
    the input_max_length window (the official prompt's 256-token cut lost it in 8 of 8 prompts)."""
    spec = get_task("LaMP_4")
    title = "Markets rally as the central bank holds interest rates steady again for the"
    questions = [headline_example(f"q{n}", f"Article number {n} about the budget vote in the city council.",
                                  [(f"body {i} of an older article", f"{title} {i}th time") for i in range(45)])
                 for n in range(8)]
    selected = StudySelector(spec, StudySettings(k=k, ablation="only_output"), questions, "dev").select(questions)
    assert all(len(items) == k for items in selected)
    prompts = study_prompts(spec, questions, selected, tiny_tokenizer, prompt_template(spec, "only_output"), 512, 256)
    for example, prompt in zip(questions, prompts):
        seen = tiny_tokenizer.decode(tiny_tokenizer(prompt, truncation=True, max_length=512)["input_ids"],
                                     skip_special_tokens=True)
        assert example.input in seen and "is the title for previous articles" in seen
        profile = prompt[:prompt.index(example.input)]
        assert len(tiny_tokenizer(profile)["input_ids"]) <= 256


def test_ablation_templates():
    spec = get_task("LaMP_4")
    assert prompt_template(spec, "decouple") == prompt_template(spec, "only_output") == "study_only_output"
    items = [{"id": "1", "text": "first body", "title": "T1"}, {"id": "2", "text": "second body", "title": "T2"}]
    question = HEADLINE + "news"
    tokenizer = WordTokenizer()
    assert build_study_prompt(spec, question, items, tokenizer, "study_only_output") == \
        f'"T1""T2" is the title for previous articles. {question}'
    assert build_study_prompt(spec, question, items, tokenizer, "study_only_input") == \
        f'The previous articles are "first body""second body". {question}'
    for name in ("LaMP_1", "LaMP_7"):                                 # the ablation is ignored
        assert prompt_template(get_task(name), "only_output") == "study_both"
    with pytest.raises(InputError, match="no prompt template 'study_both'"):
        prompt_template(get_task("LongLaMP_2"), "both")


def test_lamp2_checkpoints_are_selected_by_f1_as_in_the_study():
    assert study_task(get_task("LaMP_2")).best_metric == "f1" and get_task("LaMP_2").best_metric == "accuracy"
    assert study_task(get_task("LaMP_3")) == get_task("LaMP_3")


def test_options_that_change_nothing_are_named():
    spec = get_task("LaMP_4")
    notes = StudySettings(order="random", ablation="only_output").ignored_options(spec)
    assert any("--retrieval_order random does nothing" in note for note in notes)
    assert not StudySettings(order="random").ignored_options(spec)
    assert any("--input_retrieval_id" in n for n in StudySettings(input_retrieval_id="BM25").ignored_options(spec))
    assert any("--retrieval_target" in n for n in StudySettings(retrieval_id="Random", target=2).ignored_options(spec))
    assert any("has no prompt" in n for n in StudySettings(ablation="only_input").ignored_options(get_task("LaMP_7")))


def test_result_dir_is_named_after_the_settings(tmp_path):
    mixed = StudySettings(retrieval_id="Mixed", input_retrieval_id="BM25", output_retrieval_id="Random", k=2,
                          order="random", random_seed=3)
    assert result_dir(tmp_path, "models/flan-t5-base/", mixed, "user-based", "LaMP_4") == \
        tmp_path / "flan-t5-base" / "Mixed" / "BM25_Random" / "user-based" / "LaMP_4" / "2" / "random" / "seed3"
    bm25 = StudySettings(k=0.5, ablation="only_output", target=2)
    assert result_dir(tmp_path, "default", bm25, "time-based", "LaMP_2") == \
        tmp_path / "default" / "BM25_only_output" / "time-based" / "LaMP_2" / "0.5_2"
    training = {"lr": 5e-5, "wd": 0.001, "bs": 6, "warmup": 0.05, "seed": 0, "lora": False}
    assert result_dir(tmp_path, "default", bm25, "time-based", "LaMP_2", training).name == \
        "ft_lr5e-05_wd0.001_bs6_warmup0.05_seed0"
    assert result_dir(tmp_path, "default", bm25, "time-based", "LaMP_2", {**training, "lora": True}).name == \
        "ft_lr5e-05_wd0.001_bs6_warmup0.05_seed0_lora"


# ----------------------------------------------------------------------------- command line

def study(*argv) -> int:
    return run(profile_study.main, [str(a) for a in argv])


def test_profile_study_zero_shot_writes_results(tiny_causal_lm, tmp_path, capsys):
    code = study("--task_name", "news_headline", "--no_do_train", "--do_eval", "--retrieval_num", 2,
                 "--retrieval_ablation", "only_output", "--retrieval_order", "random", "--model_id", tiny_causal_lm,
                 "--result_dir", tmp_path, "--limit", 3, "--generation_num_beams", 1, "--output_max_length", 4,
                 "--learning_rate", 1e-4)
    assert code == 0
    out = tmp_path / tiny_causal_lm.name / "BM25_only_output" / "user-based" / "LaMP_4" / "2" / "random" / "seed1"
    selection = json.loads((out / "selection.json").read_text())
    assert len(selection) == 3 and all(len(items) == 2 for items in selection.values())
    config = json.loads((out / "config.json").read_text())
    assert config["prompt_template"] == "study_only_output" and config["task"] == "LaMP_4"
    assert set(metric_values(json.loads((out / "scores.json").read_text()))) == {"rouge-1", "rouge-L"}
    assert (out / "predictions.json").is_file() and str(out) in capsys.readouterr().out
    log = (out / "run.log").read_text()
    assert "--retrieval_order random does nothing" in log and "--learning_rate do nothing without --do_train" in log


def test_profile_study_fine_tunes_lamp2_by_f1_then_evaluates(tiny_causal_lm, tmp_path):
    import torch

    data = tmp_path / "data"
    shutil.copytree(SAMPLE / "LaMP_2", data / "time-based" / "LaMP_2")   # <root>/<task_pattern>/<task_name>
    code = study("--task_name", "LaMP_2", "--task_pattern", "time-based", "--raw_data_folder_path", data,
                 "--retrieval_id", "Full_Random", "--retrieval_num", 1, "--training_epoch", 1, "--max_steps", 1,
                 "--batch_size", 2, "--model_id", tiny_causal_lm, "--result_dir", tmp_path / "runs", "--limit", 4,
                 "--generation_num_beams", 1, "--output_max_length", 3)
    assert code == 0
    out = (tmp_path / "runs" / tiny_causal_lm.name / "Full_Random" / "time-based" / "LaMP_2" / "1" / "seed1"
           / "ft_lr5e-05_wd0.001_bs2_warmup0.05_seed0")
    assert (out / "best_model").is_dir() and (out / "scores.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["data_dir"] == str(data / "time-based" / "LaMP_2") and config["best_metric"] == "f1"
    [checkpoint] = (out / "checkpoints").glob("checkpoint-*")
    training_args = torch.load(checkpoint / "training_args.bin", weights_only=False)
    assert training_args.metric_for_best_model == "f1" and training_args.per_device_train_batch_size == 2


def test_task_name_all_runs_every_task_with_data(tiny_causal_lm, tmp_path):
    data = tmp_path / "data"
    for task in ("LaMP_4", "LaMP_7"):
        shutil.copytree(SAMPLE / task, data / "user-based" / task)
    code = study("--raw_data_folder_path", data, "--no_do_train", "--do_eval", "--model_id", tiny_causal_lm,
                 "--result_dir", tmp_path / "runs", "--limit", 2, "--generation_num_beams", 1,
                 "--output_max_length", 2)
    assert code == 0
    base = tmp_path / "runs" / tiny_causal_lm.name / "BM25" / "user-based"
    assert sorted(p.name for p in base.iterdir()) == ["LaMP_4", "LaMP_7"]
    assert all((base / task / "1" / "scores.json").is_file() for task in ("LaMP_4", "LaMP_7"))


def test_do_predict_generates_the_test_split(tiny_causal_lm, tmp_path, capsys):
    data = tmp_path / "data" / "LaMP_7"
    shutil.copytree(SAMPLE / "LaMP_7", data)
    common = ["--task_name", "LaMP_7", "--raw_data_folder_path", data.parent, "--no_do_train", "--do_predict",
              "--model_id", tiny_causal_lm, "--result_dir", tmp_path / "runs", "--limit", 2,
              "--generation_num_beams", 1, "--output_max_length", 2]
    assert study(*common) == 2 and "no test_questions.json for --do_predict" in capsys.readouterr().err
    shutil.copy(data / "dev_questions.json", data / "test_questions.json")
    assert study(*common) == 0
    out = tmp_path / "runs" / tiny_causal_lm.name / "BM25" / "user-based" / "LaMP_7" / "1"
    assert len(json.loads((out / "test" / "predictions.json").read_text())["golds"]) == 2
    assert not (out / "scores.json").exists()                     # dev is scored only with --do_eval/--do_train


def test_fp16_loads_the_model_in_half_precision(tmp_path, monkeypatch, capsys):
    import lm.loading

    calls = []

    def record(name, **options):
        calls.append(options["dtype"])
        raise InputError("stop before loading")

    monkeypatch.setattr(lm.loading, "load_model", record)
    base = ["--task_name", "LaMP_4", "--no_do_train", "--do_eval", "--result_dir", tmp_path, "--limit", 1]
    assert study(*base, "--fp16") == 2 and calls == ["float16"]
    assert study(*base) == 2 and calls == ["float16", None]
    refused = ["--task_name", "LaMP_4", "--no_do_train", "--do_eval", "--result_dir", tmp_path / "refused"]
    assert study(*refused, "--fp16", "--dtype", "float32") == 2 and calls == ["float16", None]
    assert "--fp16 loads the model in float16, but --dtype says float32" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("argv, message", [
    (["--retrieval_id", "Mixed", "--retrieval_ablation", "decouple"], "Mixed needs retrieval_ablation both"),
    (["--retrieval_num", "-1"], "--retrieval_num: must be at least 0"),
    (["--raw_data_folder_path", "no/such/folder"], "no user-based data for LaMP_4"),
    (["--task_pattern", "time-based"], "no time-based data for LaMP_4"),
    (["--no_do_train"], "nothing to do"),
    (["--training_epoch", "0"], "--do_train needs --training_epoch > 0"),
    (["--task_max_length", "600"], "must be smaller than --input_max_length"),
], ids=["mixed_needs_both", "negative_k", "missing_data", "time_based_without_data", "nothing_to_do",
        "no_epochs", "task_longer_than_window"])
def test_profile_study_bad_settings_are_one_line_errors(argv, message, tmp_path, capsys):
    assert study("--task_name", "LaMP_4", "--result_dir", tmp_path, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())


def test_help():
    out = subprocess.run([sys.executable, "-m", "lamp_rag.profile_study", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT)
    assert out.returncode == 0
    for flag in ("--retrieval_ablation", "--model_id", "--raw_data_folder_path", "--result_dir", "--input_max_length",
                 "--task_max_length", "--output_max_length", "--do_predict", "--fp16", "--training_epoch"):
        assert flag in out.stdout
