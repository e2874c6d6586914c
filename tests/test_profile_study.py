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
from data.prompts import build_prompt
from data.records import Example
from data.tasks import get_task
from eval.scoring import metric_values
from lamp_rag import profile_study
from lamp_rag.retrieval import map_term_statistics
from lamp_rag.study import (PSEUDO_PROFILE_SIZES, StudySelector, StudySettings, apply_order, guarded_profile,
                            middle_order, prompt_template, resolve_k, result_dir, study_bm25_scores,
                            study_document, study_query, target_window)

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
    settings = StudySettings(retrieval_id="Full_Random", k=1, seed=5)
    selected = StudySelector(spec, settings, [small, big], "dev").select(questions)
    share = sum(items[0]["text"].startswith("b") for items in selected) / len(selected)
    assert 0.87 < share < 0.93                                       # weight 9 / (9 + 1)
    assert StudySelector(spec, settings, [small, big], "dev").select(questions) == selected
    other_seed = StudySettings(retrieval_id="Full_Random", k=1, seed=6)
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
    assert StudySelector(spec, StudySettings(retrieval_id="RanBM25"), pool, "dev").pseudo_size == \
        PSEUDO_PROFILE_SIZES["LaMP_4"]


def test_mixed_zips_items_of_one_retrieval_with_outputs_of_another():
    spec = get_task("LaMP_4")
    dev = sample_split("dev", 6)
    mixed = StudySettings(retrieval_id="Mixed", input_retrieval_id="BM25", output_retrieval_id="Random", k=2, seed=2)
    selected = StudySelector(spec, mixed, dev, "dev").select(dev)
    inputs = StudySelector(spec, StudySettings(k=2), dev, "dev").select(dev)
    outputs = StudySelector(spec, StudySettings(retrieval_id="Random", k=2, seed=2), dev, "dev").select(dev)
    for items, ins, outs in zip(selected, inputs, outputs):
        assert len(items) == 2
        assert [item["text"] for item in items] == [item["text"] for item in ins]
        assert [item["title"] for item in items] == [item["title"] for item in outs]
        assert ids(items) == ids(ins)


# ----------------------------------------------------------------------------- prompts and folders

def test_ablation_prompts():
    spec = get_task("LaMP_4")
    items = [{"id": "1", "text": "first body", "title": "T1"}, {"id": "2", "text": "second body", "title": "T2"}]
    question = HEADLINE + "news"
    assert prompt_template(spec, "decouple") == prompt_template(spec, "only_output") == "study_only_output"
    assert build_prompt(spec, question, items, template=prompt_template(spec, "only_output")) == \
        f'"T1""T2" is the title for previous articles. {question}'
    assert build_prompt(spec, question, items, template=prompt_template(spec, "only_input")) == \
        f'The previous articles are "first body""second body". {question}'
    assert build_prompt(spec, question, items, template=prompt_template(spec, "both")) == \
        f'"T1" is the title for "first body" , and "T2" is the title for "second body" . {question}'
    for name in ("LaMP_1", "LaMP_7"):                                 # the ablation is ignored
        assert prompt_template(get_task(name), "only_output") == "official"


def test_result_dir_is_named_after_the_settings(tmp_path):
    mixed = StudySettings(retrieval_id="Mixed", input_retrieval_id="BM25", output_retrieval_id="Random", k=2,
                          order="random", seed=3)
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
    code = study("--task_name", "news_headline", "--retrieval_num", 2, "--retrieval_ablation", "only_output",
                 "--retrieval_order", "middle", "--training_epoch", 0, "--model_name", tiny_causal_lm,
                 "--output_root", tmp_path, "--limit", 3, "--num_beams", 1, "--max_new_tokens", 4)
    assert code == 0
    out = tmp_path / tiny_causal_lm.name / "BM25_only_output" / "user-based" / "LaMP_4" / "2" / "middle"
    selection = json.loads((out / "selection.json").read_text())
    assert len(selection) == 3 and all(len(items) == 2 for items in selection.values())
    config = json.loads((out / "config.json").read_text())
    assert config["prompt_template"] == "study_only_output" and config["args"]["task"] == "LaMP_4"
    assert set(metric_values(json.loads((out / "scores.json").read_text()))) == {"rouge-1", "rouge-L"}
    assert (out / "predictions.json").is_file() and str(out) in capsys.readouterr().out


def test_profile_study_fine_tunes_then_evaluates(tiny_causal_lm, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE / "LaMP_2", data / "time-based")         # --task_pattern picks the subfolder
    code = study("--task_name", "LaMP_2", "--task_pattern", "time-based", "--data_dir", data, "--retrieval_id",
                 "Full_Random", "--retrieval_num", 1, "--training_epoch", 1, "--max_steps", 1,
                 "--per_device_batch_size", 2, "--model_name", tiny_causal_lm, "--output_root", tmp_path / "runs",
                 "--limit", 4, "--num_beams", 1, "--max_new_tokens", 3)
    assert code == 0
    out = (tmp_path / "runs" / tiny_causal_lm.name / "Full_Random" / "time-based" / "LaMP_2" / "1" / "seed1"
           / "ft_lr5e-05_wd0.001_bs2_warmup0.05_seed0")
    assert (out / "best_model").is_dir() and (out / "scores.json").is_file()
    assert json.loads((out / "config.json").read_text())["data_dir"] == str(data / "time-based")


@pytest.mark.parametrize("argv", [["--retrieval_id", "Mixed", "--retrieval_ablation", "decouple"],
                                  ["--retrieval_num", "-1"], ["--data_dir", "no/such/folder"]],
                         ids=["mixed_needs_both", "negative_k", "missing_data"])
def test_profile_study_bad_settings_are_one_line_errors(argv, tmp_path, capsys):
    assert study("--task_name", "LaMP_4", "--output_root", tmp_path, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_help():
    out = subprocess.run([sys.executable, "-m", "lamp_rag.profile_study", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT)
    assert out.returncode == 0 and "--retrieval_ablation" in out.stdout
