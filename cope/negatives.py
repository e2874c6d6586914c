"""Pseudo-negatives: candidates sampled from the TAM per history item, and the one DPO trains against
(spec curp_cope_oppu 3.6, 3.7).

A candidate's score under a model is its mean log-probability per token given the item's prompt (the
same prompt SFT and DPO use, see cope.data); diff = score_TAM - score_OPPU. ``max`` keeps the candidate
with the largest diff (most TAM-like and least like the user), ``min`` the smallest.
"""
from __future__ import annotations

from typing import Sequence

from cope.data import User, item_prompt
from cope.pipeline import PSEUDO_NEGATIVE_TOP_P, USER_ADAPTER

SELECTIONS = ("max", "min")


def sample_candidates(handle, spec, user: User, response_num: int, temperature: float, max_new_tokens: int,
                      repetition_penalty: float, seed: int, batch_size: int) -> list[dict]:
    """``response_num`` samples from the model as it is (the TAM) per history item, in one batched call."""
    prompts = [item_prompt(spec, item) for item in user.profile for _ in range(response_num)]
    texts = handle.generate(prompts, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                            top_p=PSEUDO_NEGATIVE_TOP_P, repetition_penalty=repetition_penalty, seed=seed,
                            batch_size=batch_size, progress=False)
    return [{"id": item["id"], "pseudo_negative": [text.strip() for text in
                                                   texts[i * response_num:(i + 1) * response_num]]}
            for i, item in enumerate(user.profile)]


def select_negative(tam_scores: Sequence[float], oppu_scores: Sequence[float], std: str) -> tuple[int, list[float]]:
    """(index of the chosen candidate, diffs) with diff = TAM score - OPPU score; ties: the first."""
    if std not in SELECTIONS:
        raise ValueError(f"std must be one of {SELECTIONS}, got {std!r}")
    diffs = [tam - oppu for tam, oppu in zip(tam_scores, oppu_scores)]
    pick = max if std == "max" else min
    return pick(range(len(diffs)), key=lambda i: diffs[i]), diffs


def score_user(handle, spec, user: User, candidates: Sequence[dict], std: str, batch_size: int) -> list[dict]:
    """Each candidate scored with the loaded user adapter and without it (the TAM), in one mixed batch."""
    from lm.decoding import BASE

    items = {item["id"]: item for item in user.profile}
    prompts, targets = [], []
    for row in candidates:
        for text in row["pseudo_negative"]:
            prompts.append(item_prompt(spec, items[row["id"]]))
            targets.append(text)
    count = len(targets)
    scores = handle.score(prompts * 2, targets * 2, batch_size=batch_size, progress=False,
                          adapter_names=[USER_ADAPTER] * count + [BASE] * count)
    oppu, tam = [s.mean_logprob for s in scores[:count]], [s.mean_logprob for s in scores[count:]]
    selection, start = [], 0
    for row in candidates:
        end = start + len(row["pseudo_negative"])
        chosen, diffs = select_negative(tam[start:end], oppu[start:end], std)
        selection.append({**row, "OPPU_scores": oppu[start:end], "base_scores": tam[start:end],
                          "score_differences": diffs, "final_score_difference": diffs[chosen],
                          "negative_response": row["pseudo_negative"][chosen]})
        start = end
    return selection


NEGATIVES_DIR = "pseudo_negatives"
NEGATIVES_FILE = "negatives.json"       # per user: [{"id", "pseudo_negative": [...]}] per history item
SELECTION_FILE = "selection.json"       # per user: the same rows with scores and "negative_response"
COMBINED_FILE = "user_top_100_history_with_pseudo_negatives{suffix}.json"


def scores_dir(root, std: str):
    from pathlib import Path

    return Path(root) / f"scores_{std}"


def write_combined(root, spec, users: Sequence[User], stage, file_name: str, suffix: str):
    """The reference's artefact: the target users with each history item's rows merged in (every user done)."""
    from pathlib import Path

    from data.convert import user_key
    from data.io import atomic_write_json, read_json
    from runtime.users import user_folder

    entries = []
    for user in users:
        rows = {row["id"]: row for row in read_json(user_folder(stage, user.name) / file_name)}
        entries.append({user_key(spec): user.name,
                        "profile": [{**item, **rows.get(item["id"], {})} for item in user.profile],
                        "query": [{"id": q.id, "input": q.input, **({"gold": q.target} if q.target else {})}
                                  for q in user.queries]})
    path = atomic_write_json(Path(root) / COMBINED_FILE.format(suffix=suffix), entries)
    print(f"written: {path}")
    return path
