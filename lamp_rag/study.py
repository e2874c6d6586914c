"""Item selection of the user-profile role study (Wu et al. 2024, arXiv 2406.17803; spec A4-A7).

    settings = StudySettings(retrieval_id="BM25", k=3, ablation="only_output", order="middle")
    selector = StudySelector(spec, settings, pool=train + dev, stream="dev")
    items = selector.select(dev)                        # per example: the profile items for its prompt
    template = prompt_template(spec, settings.ablation)  # "study_only_output"

What is reproduced, and where it departs from the study's code:

* ``--retrieval_id``: ``BM25`` top-k of the user's own profile with the study's BM25 (below); ``Random``
  k items of the own profile; ``Full_Random`` k items pooled from k users drawn (with replacement,
  weighted by profile size) from the train+eval users; ``RanBM25`` the study's BM25 over a pseudo-profile
  of S items pooled from S such users (S: the registry's ``study_pseudo_profile_size``); ``Mixed`` the items of one
  retrieval with the output field of another's, zipped (``both`` ablation only).
* The study's BM25 is not rank_bm25's: idf = ln((N - df + 0.5) / (df + 0.5) + 1), each distinct query term
  once, multiplied by its count in the query (tf_q); ties keep profile order. Query: the registry's, except
  for quote-based tasks (LaMP_1): the words of all quoted strings of the input.
* Leakage guard (BM25-based retrievals): the first profile item whose input field (LaMP_7: its text)
  equals the query text is removed; for LaMP_1, the item whose title equals the paper's own title (the
  first quoted string). ``Random`` does not apply it, as in the study.
* k: 0 < k < 1 is a fraction of the (guarded) profile for BM25-based retrievals; otherwise int(k).
  ``retrieval_target`` t (ranks if >= 1, else a fraction of the profile) takes ranks [t, t+k) instead of
  the top k; if t + k reaches the profile size nothing is taken (the study's rule).
* Randomness is seeded once per run and split (one ``random.Random`` per (seed, split) stream). The study
  re-seeded on every ``datasets.map`` batch, so every batch of 1000 drew the same users; not reproduced.
* ``decouple`` ranks on the input field alone and shows outputs like ``only_output``; the ablation is
  ignored (``both``) for tasks without the study's ablation prompts (LaMP_1, LaMP_7).
* Prompts are the study's own templates (``study_*`` in data.tasks, spec A6), not the official LaMP
  prompt: ``both`` cuts every item to its share of the profile budget, ``only_output`` / ``decouple``
  cut the block of outputs as a whole; see :func:`data.prompts.build_study_prompt`.
* LaMP_2 keeps the checkpoint with the best F1 as the study did (the registry's ``study_best_metric``).
* ``--retrieval_order``: ``start`` (best first), ``end`` (reversed), ``middle`` (best in the centre, see
  :func:`middle_order`), ``random`` (each list shuffled by ``random.Random(seed)``, so equally long lists
  get the same permutation; applied with ``both`` only, as the study's ablation prompts ignore it).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, fields, replace
from itertools import accumulate
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np

from data.cli import option, task_name, writable_dir
from data.errors import InputError, input_error
from data.records import Example
from data.tasks import TaskSpec
from lamp_rag.retrieval import BM25_B, BM25_K1, QueryTerms, map_term_statistics

RETRIEVAL_IDS = ("BM25", "Random", "Full_Random", "Mixed", "RanBM25")
MIXED_SOURCES = ("BM25", "Random", "Full_Random")
ABLATIONS = ("both", "only_input", "only_output", "decouple")
ORDERS = ("start", "end", "middle", "random")
# The prompt template (data.tasks) of each ablation; decouple differs from only_output in retrieval only.
ABLATION_TEMPLATES = {"both": "study_both", "only_input": "study_only_input", "only_output": "study_only_output",
                      "decouple": "study_only_output"}
_QUOTED = re.compile(r'"(.*?)"')

T = TypeVar("T")


@dataclass(frozen=True)
class StudySettings:
    """Which items of which profile go into the prompt, in which fields and order (the study's flags, spec A3)."""

    retrieval_id: str = option("BM25", "which items: the user's BM25 top-k, random own items, random items of "
                                       "other users (Full_Random), BM25 over random other users' items "
                                       "(RanBM25), or Mixed", choices=RETRIEVAL_IDS)
    k: float = option(1, "k items per prompt; 0 = no profile; 0 < k < 1 = that fraction of the profile "
                         "(BM25-based retrievals)", flags=["--retrieval_num"], minimum=0)
    ablation: str = option("both", "which fields the prompt shows: input+output pairs, inputs only, outputs only, "
                                   "or outputs only with BM25 on the inputs (decouple)",
                           flags=["--retrieval_ablation"], choices=ABLATIONS)
    order: str = option("start", "best item first, last, in the middle, or a seeded shuffle (both only)",
                        flags=["--retrieval_order"], choices=ORDERS)
    target: float = option(0, "take BM25 ranks [t, t+k) instead of the top k; t >= 1 is a rank, t < 1 a fraction "
                              "of the profile", flags=["--retrieval_target"], minimum=0)
    random_seed: int = option(1, "seed of every random draw", flags=["--retrieval_random_seed"])
    input_retrieval_id: str = option("Random", "Mixed: retrieval giving the items (their inputs)",
                                     choices=MIXED_SOURCES)
    output_retrieval_id: str = option("Random", "Mixed: retrieval giving the output fields", choices=MIXED_SOURCES)
    pseudo_profile_size: int | None = option(None, "RanBM25: items per pseudo-profile (default: the study's "
                                                   "average profile size for the task, else the mean profile size "
                                                   "of train + dev)", minimum=1)

    def check(self) -> None:
        """Raise InputError for an impossible combination of settings."""
        choices = {"retrieval_id": (self.retrieval_id, RETRIEVAL_IDS), "ablation": (self.ablation, ABLATIONS),
                   "order": (self.order, ORDERS), "input_retrieval_id": (self.input_retrieval_id, MIXED_SOURCES),
                   "output_retrieval_id": (self.output_retrieval_id, MIXED_SOURCES)}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise InputError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        if self.k < 0 or self.target < 0:
            raise InputError(f"retrieval_num and retrieval_target must be >= 0, got {self.k} and {self.target}")
        if self.retrieval_id == "Mixed" and self.ablation != "both":
            raise InputError(f"retrieval_id Mixed needs retrieval_ablation both, got {self.ablation}")
        if self.pseudo_profile_size is not None and self.pseudo_profile_size < 1:
            raise InputError(f"pseudo_profile_size must be >= 1, got {self.pseudo_profile_size}")

    def ignored_options(self, spec: TaskSpec) -> list[str]:
        """Settings that change nothing in this combination (each worth a warning), e.g. a random order
        with the ablation prompts, which keep the ranking's order."""
        defaults = StudySettings()
        changed = {each.name for each in fields(self) if getattr(self, each.name) != getattr(defaults, each.name)}
        ablation = effective_ablation(spec, self.ablation)
        notes = []
        if "ablation" in changed and ablation != self.ablation:
            notes.append(f"--retrieval_ablation {self.ablation}: {spec.name} has no prompt for it (the study "
                         f"ignores ablations for LaMP_1 and LaMP_7); using both")
        if self.order == "random" and ablation != "both":
            notes.append(f"--retrieval_order random does nothing with --retrieval_ablation {self.ablation}: the "
                         f"study shuffles only the 'both' prompts")
        if changed & {"input_retrieval_id", "output_retrieval_id"} and self.retrieval_id != "Mixed":
            notes.append("--input_retrieval_id / --output_retrieval_id do nothing without --retrieval_id Mixed")
        bm25_based = self.retrieval_id in ("BM25", "RanBM25") or (
            self.retrieval_id == "Mixed" and "BM25" in (self.input_retrieval_id, self.output_retrieval_id))
        if "target" in changed and not bm25_based:
            notes.append(f"--retrieval_target does nothing with --retrieval_id {self.retrieval_id} (BM25 ranks only)")
        if "pseudo_profile_size" in changed and self.retrieval_id != "RanBM25":
            notes.append("--pseudo_profile_size does nothing without --retrieval_id RanBM25")
        if "random_seed" in changed and not self.uses_random:
            notes.append("--retrieval_random_seed does nothing: nothing in these settings is random")
        return notes

    @property
    def uses_random(self) -> bool:
        sources = {self.input_retrieval_id, self.output_retrieval_id} if self.retrieval_id == "Mixed" \
            else {self.retrieval_id}
        return self.order == "random" or bool(sources & {"Random", "Full_Random", "RanBM25"})


ALL_TASKS = "All"
TASK_PATTERNS = ("user-based", "time-based")


def study_task_name(value: str) -> str:
    """argparse type of --task_name: "All" or any task alias (resolved to the canonical name)."""
    return ALL_TASKS if value.lower() == ALL_TASKS.lower() else task_name(value)


@dataclass
class StudyOptions:
    """What the study runs on and what it does (the study's flags and defaults, spec A3)."""

    task_name: str = option(ALL_TASKS, "a task (any alias) or All: every task with the study's prompts whose "
                                       "data folder exists", type=study_task_name)
    task_pattern: str = option("user-based", "split type: the data is read from <raw_data_folder_path>/"
                                             "<task_pattern>/<task_name>/ (user-based data may also sit directly "
                                             "in <raw_data_folder_path>/<task_name>/)", choices=TASK_PATTERNS)
    raw_data_folder_path: Path | None = option(None, "folder of the LaMP data: {train,dev,test}_{questions,"
                                                     "outputs}.json per task (default: the embedded sample, "
                                                     "data/sample)")
    result_dir: Path = option(Path("runs/profile_study"), "results root; the run folder is named after the "
                                                           "settings", type=writable_dir)
    input_max_length: int = option(512, "the model's input window in tokens; prompts are cut to it from the "
                                        "right", minimum=1)
    task_max_length: int = option(256, "tokens of the window left to the task input; the profile gets the rest",
                                  minimum=0)
    do_train: bool = option(True, "fine-tune on the train split, best epoch on dev, then score dev with it")
    do_eval: bool = option(False, "score the dev split with the model as loaded (zero-shot; use with --no_do_train)")
    do_predict: bool = option(False, "generate the test split (test_questions.json) into <run>/test/")
    fp16: bool = option(False, "load the model in float16 (the study's setting for Llama-2-chat)")

    def check(self) -> None:
        if self.task_max_length >= self.input_max_length:
            raise InputError(f"--task_max_length ({self.task_max_length}) must be smaller than --input_max_length "
                             f"({self.input_max_length}): the profile gets the difference")
        if not (self.do_train or self.do_eval or self.do_predict):
            raise InputError("nothing to do: give --do_train, --do_eval or --do_predict")


# ----------------------------------------------------------------------------- per-task rules

def effective_ablation(spec: TaskSpec, ablation: str) -> str:
    """The ablation as run: ``both`` for tasks without the ablation's prompt template (LaMP_1, LaMP_7)."""
    return ablation if ABLATION_TEMPLATES[ablation] in spec.templates else "both"


def prompt_template(spec: TaskSpec, ablation: str) -> str:
    """The ``data.tasks`` prompt template name of an ablation for this task (InputError if it has none)."""
    name = ABLATION_TEMPLATES[effective_ablation(spec, ablation)]
    spec.template(name)
    return name


def study_task(spec: TaskSpec) -> TaskSpec:
    """The task as the study trains it: its checkpoint-selection metric where the study differs (LaMP_2: F1)."""
    metric = spec.study_best_metric
    return spec if metric is None else replace(spec, best_metric=metric)


def study_prompts(spec: TaskSpec, examples: Sequence[Example], selected: Sequence[Sequence[Mapping]], tokenizer,
                  template: str, input_max_length: int, task_max_length: int) -> list[str]:
    """The study's prompt per example (data.prompts.build_study_prompt), with a progress bar."""
    from tqdm.auto import tqdm

    from data.prompts import build_study_prompt

    return [build_study_prompt(spec, example.input, items, tokenizer, template, input_max_length, task_max_length)
            for example, items in tqdm(zip(examples, selected, strict=True), total=len(examples), desc="prompts",
                                       unit="ex")]


def study_query(spec: TaskSpec, input_text: str) -> str:
    """The study's BM25 query: the registry's, but all quoted strings for quote-based tasks (LaMP_1)."""
    if spec.query_from_quotes:
        return " ".join(_QUOTED.findall(input_text))
    return spec.query(input_text)


def guarded_profile(spec: TaskSpec, input_text: str, profile: Sequence[Mapping]) -> list[Mapping]:
    """The profile without the first item that duplicates the question (the study's leakage guard)."""
    if spec.query_from_quotes:
        quoted = _QUOTED.findall(input_text)
        leaked = quoted[0] if quoted else None
    else:
        leaked = spec.query(input_text)
    field = spec.item_input_field or spec.item_output_field
    profile = list(profile)
    for i, item in enumerate(profile):
        if item.get(field) == leaked:
            return profile[:i] + profile[i + 1:]
    return profile


def study_document(spec: TaskSpec, item: Mapping, ablation: str) -> str:
    """The study's BM25 document: input + output field, the input field alone for ``decouple``."""
    fields = (spec.item_input_field,) if ablation == "decouple" else (spec.item_input_field,
                                                                      spec.item_output_field)
    return " ".join(str(item[field]) for field in fields if field)


def study_bm25_scores(stats: QueryTerms, k1: float = BM25_K1, b: float = BM25_B) -> np.ndarray:
    """The study's BM25 (spec A4): sum over distinct common terms of idf * tf*(k1+1)*tf_q / (tf + k1*norm)."""
    n = len(stats.doc_len)
    if not len(stats.terms):
        return np.zeros(n)
    df = stats.df[stats.terms]
    idf = np.log((n - df + 0.5) / (df + 0.5) + 1)
    query_tf = np.bincount(stats.query_terms, minlength=len(stats.terms))
    norm = k1 * (1 - b + b * stats.doc_len / stats.doc_len.mean())
    return (stats.tf * (k1 + 1) * query_tf / (stats.tf + norm[:, None])) @ idf


# ----------------------------------------------------------------------------- k, target, order

def resolve_k(k: float, profile_size: int) -> int:
    """k as a count: a fraction of the profile when 0 < k < 1, else int(k)."""
    return int(k * profile_size) if 0 < k < 1 else int(k)


def target_window(ranked: Sequence[T], k: int, target: float) -> list[T]:
    """Ranks [t, t + k) of ``ranked``; t = 0 (the top k) unless ``target`` is set (spec A4).

    t is ``int(target)`` if target >= 1, else ``int(len(ranked) * target)``; if t + k reaches the end of
    the ranking, nothing is taken (the study's rule, even when the window would just fit).
    """
    if not target:
        return list(ranked[:k])
    start = min(int(target) if target >= 1 else int(len(ranked) * target), len(ranked))
    if start + k >= len(ranked):
        return []
    return list(ranked[start:start + k])


def middle_order(items: Sequence[T]) -> list[T]:
    """Best in the centre, relevance decreasing toward both ends: 5 -> [3,1,0,2,4], 4 -> [3,1,0,2]."""
    n, half = len(items), len(items) // 2
    if n % 2:
        return [items[-2 - 2 * i] for i in range(half)] + [items[2 * i] for i in range(half + 1)]
    return [items[-1 - 2 * i] for i in range(half)] + [items[2 * i] for i in range(half)]


def apply_order(items: Sequence[T], order: str, ablation: str, seed: int) -> list[T]:
    """Reorder a best-first list for the prompt (``ablation`` as run, see :func:`effective_ablation`)."""
    if order == "end":
        return list(items)[::-1]
    if order == "middle":
        return middle_order(items)
    items = list(items)
    if order == "random" and ablation == "both":
        random.Random(seed).shuffle(items)
    return items


# ----------------------------------------------------------------------------- selection

class StudySelector:
    """Selects the prompt items of a split's examples under one :class:`StudySettings`.

    ``pool``: the examples whose users cross-user retrievals draw from (the study: train + eval split).
    ``stream``: names this selector's random stream, e.g. the split, so the eval selection does not
    depend on whether the train split was selected first.
    """

    def __init__(self, spec: TaskSpec, settings: StudySettings, pool: Sequence[Example], stream: str):
        settings.check()
        self.spec, self.settings = spec, settings
        self.ablation = effective_ablation(spec, settings.ablation)
        self.rng = random.Random(f"{settings.random_seed}:{stream}")
        self.profiles = [example.profile for example in pool]
        self.cum_weights = list(accumulate(len(profile) for profile in self.profiles))
        self.pseudo_size = settings.pseudo_profile_size or spec.study_pseudo_profile_size
        if self.pseudo_size is None:
            self.pseudo_size = max(1, round(self.cum_weights[-1] / len(self.profiles))) if self.profiles else 1

    def select(self, examples: Sequence[Example]) -> list[list[Mapping]]:
        """Per example, its items in prompt order."""
        settings = self.settings
        if settings.retrieval_id == "Mixed":
            inputs = self._retrieve(examples, settings.input_retrieval_id)
            outputs = self._retrieve(examples, settings.output_retrieval_id)
            field = self.spec.item_output_field
            selected = [[{**item, field: other[field]} for item, other in zip(ins, outs)]
                        for ins, outs in zip(inputs, outputs)]
        else:
            selected = self._retrieve(examples, settings.retrieval_id)
        return [apply_order(items, settings.order, self.ablation, settings.random_seed) for items in selected]

    def _retrieve(self, examples: Sequence[Example], retrieval_id: str) -> list[list[Mapping]]:
        k = self.settings.k
        if retrieval_id == "BM25":
            return self._bm25(examples, [example.profile for example in examples])
        if retrieval_id == "RanBM25":
            return self._bm25(examples, [self._cross_user_items(self.pseudo_size) for _ in examples])
        if retrieval_id == "Random":
            return [self.rng.sample(list(example.profile), int(k)) if len(example.profile) >= int(k)
                    else list(example.profile) for example in examples]
        if retrieval_id == "Full_Random":
            return [self._cross_user_items(int(k)) for _ in examples]
        raise ValueError(f"unknown retrieval_id {retrieval_id!r}")

    def _bm25(self, examples: Sequence[Example], profiles: Sequence[Sequence[Mapping]]) -> list[list[Mapping]]:
        spec = self.spec
        guarded = [guarded_profile(spec, example.input, profile) for example, profile in zip(examples, profiles)]
        queries = [study_query(spec, example.input) for example in examples]
        corpora = [[study_document(spec, item, self.ablation) for item in profile] for profile in guarded]
        scores = map_term_statistics(queries, corpora, study_bm25_scores, progress=True, desc="study bm25")
        selected = []
        for profile, score in zip(guarded, scores):
            ranked = [profile[i] for i in np.argsort(-score, kind="stable")]
            selected.append(target_window(ranked, resolve_k(self.settings.k, len(profile)), self.settings.target))
        return selected

    def _cross_user_items(self, count: int) -> list[Mapping]:
        """``count`` items pooled from ``count`` users drawn with replacement, weighted by profile size."""
        if count <= 0:
            return []
        users = self.rng.choices(range(len(self.profiles)), cum_weights=self.cum_weights, k=count)
        pooled = [item for user in users for item in self.profiles[user]]
        return self.rng.sample(pooled, count)


def result_dir(root: str | Path, model_name: str, settings: StudySettings, task_pattern: str,
               task_name: str, training: Mapping[str, Any] | None = None) -> Path:
    """The run folder, named after the settings as in the study (spec A8):

        <root>/<model>/<retrieval_id>[_<ablation>][/<in>_<out>]/<pattern>/<task>/<k>[_<target>][/<order>][/seed<s>]
        [/ft_<name><value>_...]

    with the ablation's own name as suffix (none for both) and one seed folder when anything is random.
    ``training`` (fine-tuned runs): the settings that change the trained weights, e.g. {"lr": 5e-5, "lora": True},
    as a last folder (a true flag by its name alone, a false one left out), so runs with other training settings
    never share a folder. The number of epochs is not part of it: rerunning with more epochs extends the run.
    """
    method = settings.retrieval_id + ("" if settings.ablation == "both" else f"_{settings.ablation}")
    path = Path(root) / Path(str(model_name).rstrip("/")).name / method
    if settings.retrieval_id == "Mixed":
        path /= f"{settings.input_retrieval_id}_{settings.output_retrieval_id}"
    size = _number(settings.k) + (f"_{_number(settings.target)}" if settings.target else "")
    path = path / task_pattern / task_name / size
    if settings.order != "start":
        path /= settings.order
    if settings.uses_random:
        path /= f"seed{settings.random_seed}"
    if training is not None:
        parts = [name if value is True else f"{name}{_number(value) if isinstance(value, float) else value}"
                 for name, value in training.items() if value is not False]
        path /= "_".join(["ft", *parts])
    return path


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def data_folder(root: Path, task_pattern: str, task_name: str) -> Path:
    """The folder with a task's split files: <root>/<pattern>/<task> or <root>/<pattern>, and for user-based data
    also <root>/<task> or <root> itself. Time-based data must sit under a time-based folder: a user-based
    folder is never used for it."""
    candidates = [root / task_pattern / task_name, root / task_pattern]
    if task_pattern == "user-based":
        candidates += [root / task_name, root]
    for folder in candidates:
        if questions_file(folder, "dev").is_file():
            return folder
    raise input_error(root, f"no {task_pattern} data for {task_name}: no dev_questions.json in "
                            f"{task_pattern}/{task_name}/ or {task_pattern}/"
                            + ("" if task_pattern == "user-based" else " (time-based data needs its own folder)"))


def questions_file(folder: Path, split: str) -> Path:
    """``<split>_questions.json``, or ``.jsonl`` (the study's LaMP_3 train file)."""
    path = folder / f"{split}_questions.json"
    return path if path.is_file() or not path.with_suffix(".jsonl").is_file() else path.with_suffix(".jsonl")


def outputs_file(folder: Path, split: str) -> Path | None:
    path = folder / f"{split}_outputs.json"
    return path if path.is_file() else None


def study_tasks(options: StudyOptions, root: Path) -> list[str]:
    """The task names to run: the one asked for, or with All every task with the study's prompts and data."""
    if options.task_name != ALL_TASKS:
        return [options.task_name]
    from data.tasks import list_tasks

    names = [spec.name for spec in list_tasks() if ABLATION_TEMPLATES["both"] in spec.templates]
    found = []
    for name in names:
        try:
            folder = data_folder(root, options.task_pattern, name)
        except InputError:
            continue
        if folder.name == name:     # All needs a folder per task
            found.append(name)
    if not found:
        raise input_error(root, f"--task_name All: no {options.task_pattern} data for any of {', '.join(names)}")
    return found
