"""CoPe's inputs: the OPPU per-user folder read through ``data.loaders``, and ONE prompt form per item.

The reference builds three prompts for one history item (the ``prompt`` template for sampling, the raw
field for scoring, ``OPPU_input`` for SFT and DPO; spec curp_cope_oppu 5). Here every step uses the same
chat prompt: the task's system text (registry ``text_templates["system"]``) and the task input as the
benchmark writes it - a query's own ``input``, or for a history item the registry's item prompt filled
from the item's fields - so the TAM, the per-user adapters, the sampled negatives, their scores and DPO
all see one form, and training and inference encode it the same way (``lm.train`` encodes as generate).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from data.convert import HISTORY, LABELS, OTHERS
from data.errors import input_error
from data.loaders import load_examples
from data.records import Example
from data.tasks import TaskSpec, get_task


@dataclass
class User:
    """One target (or non-target) user: the history items and the queries asked with them."""
    name: str                 # unique within the file (OPPU files may list one user id twice)
    profile: list[dict]
    queries: list[Example]


def chat_prompt(spec: TaskSpec, task_input: str) -> list[dict]:
    return [{"role": "system", "content": spec.text_template("system")}, {"role": "user", "content": task_input}]


def item_prompt(spec: TaskSpec, item: Mapping) -> list[dict]:
    """A history item's prompt: the task input the item would have been asked with."""
    return chat_prompt(spec, spec.item_prompt(item))


def query_prompt(spec: TaskSpec, example: Example) -> list[dict]:
    return chat_prompt(spec, example.input)


def item_target(spec: TaskSpec, item: Mapping) -> str:
    return spec.item_output(item)


def first_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` whitespace-separated words (the reference cuts every field to 768)."""
    if max_words is None:
        return text
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


def read_users(data_dir: str | Path, task: str | None, file: str = HISTORY, max_history: int | None = None,
               num_users: int | None = None, max_words: int | None = None) -> tuple[TaskSpec, list[User]]:
    """Users of ``data_dir/file`` in file order (golds from the label file for the target users).

    ``max_history`` keeps each user's last N history items (the newest, in the released order);
    ``num_users`` keeps the first N users; ``max_words`` cuts every string field of a history item and every
    query input to its first N words.
    """
    path = Path(data_dir) / file
    if not path.is_file():
        raise input_error(path, "file not found (an OPPU folder: python -m data.convert to-oppu)")
    labels = Path(data_dir) / LABELS if file == HISTORY and (Path(data_dir) / LABELS).is_file() else None
    examples = load_examples(path, labels, task=task)
    if not examples:
        raise input_error(path, "no users with queries")
    spec = get_task(examples[0].task)
    spec.text_template("system")   # a task without CoPe's system text is an error before any work
    users: list[User] = []
    for example in examples:
        last = users[-1] if users else None
        # Queries of one user entry share one profile object; a new entry starts a new user.
        if last is None or last.queries[-1].user_id != example.user_id or last.profile is not example.profile:
            taken = sum(user.queries[0].user_id == example.user_id for user in users)
            name = example.user_id if not taken else f"{example.user_id}#{taken}"
            users.append(User(name, example.profile, []))
        users[-1].queries.append(example)
    if num_users is not None:
        users = users[:num_users]
    if max_history is not None:
        users = [User(user.name, user.profile[-max_history:], user.queries) for user in users]
    if max_words is not None:
        users = [User(user.name,
                      [{name: first_words(value, max_words) if isinstance(value, str) and name != "id" else value
                        for name, value in item.items()} for item in user.profile],
                      [replace(query, input=first_words(query.input, max_words)) for query in user.queries])
                 for user in users]
    return spec, users


def read_others(data_dir: str | Path, task: str | None, num_users: int | None = None,
                max_words: int | None = None) -> tuple[TaskSpec, list[Example]]:
    """The non-target users' queries with golds (the TAM's training data), of the first ``num_users`` users."""
    spec, users = read_users(data_dir, task, OTHERS, num_users=num_users, max_words=max_words)
    examples = [query for user in users for query in user.queries]
    for example in examples:
        if example.target is None:
            raise input_error(Path(data_dir) / OTHERS, "a non-target query needs its gold", record=example.id,
                              field="gold")
    return spec, examples
