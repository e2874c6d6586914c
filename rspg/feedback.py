"""Per-retriever feedback: what the LLM wrote with one retriever's prompt, and how good it was, per question.

The file (``feedback.json`` in the scorer's run folder) has the shape of the reference's per-question
``scores.json`` (spec lamp.md 9.1)::

    {"<question id>": {"metric": {"rouge-1": 0.4, "rouge-L": 0.3}, "output": "...", "input": "..."}, ...}

It is not named ``scores.json`` because in a run folder that name is the eval report every method writes
and ``eval.report`` reads (ARCHITECTURE.md, runtime); :func:`feedback_path` finds either layout.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from data.errors import input_error
from data.io import read_json
from data.records import Example
from lm.prompting import Prompt

FEEDBACK_FILE = "feedback.json"
REFERENCE_FILE = "scores.json"     # the reference scorer's name for the same per-question file


def prompt_text(prompt: Prompt) -> str:
    """The prompt as the selector reads it: a string prompt as is, a chat prompt as its turns' text.

    Chat template tokens are left out on purpose: they are the same for every retriever and would only
    use up the selector encoder's input length.
    """
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{message['role']}: {message['content']}" for message in prompt)


def question_feedback(task: str, examples: Sequence[Example], prompts: Sequence[Prompt],
                      outputs: Sequence[str], metrics: Sequence[str] | None = None) -> dict[str, dict]:
    """Per question: its per-example metrics (eval.metrics), the output and the prompt text."""
    from eval.metrics import per_example_scores

    scores = per_example_scores(task, list(outputs), [example.target for example in examples], metrics)
    return {example.id: {"metric": {name: values[row] for name, values in scores.items()},
                         "output": output, "input": prompt_text(prompt)}
            for row, (example, prompt, output) in enumerate(zip(examples, prompts, outputs))}


def feedback_path(location: str | os.PathLike) -> Path:
    """A feedback file, or the folder holding one (this scorer's ``feedback.json`` or the reference's
    per-question ``scores.json``)."""
    location = Path(location)
    if location.is_file():
        return location
    for name in (FEEDBACK_FILE, REFERENCE_FILE):
        if (location / name).is_file():
            return location / name
    raise input_error(location, f"no {FEEDBACK_FILE} (rspg.retriever_utilization_scorer output) "
                                f"or per-question {REFERENCE_FILE} in this folder")


def read_feedback(location: str | os.PathLike) -> tuple[Path, dict[str, Mapping]]:
    """(path, {question id: {"metric", "output", "input"}}) with every record's fields checked."""
    path = feedback_path(location)
    feedback = read_json(path)
    if not isinstance(feedback, dict) or "golds" in feedback or "num_examples" in feedback:
        raise input_error(path, "not a per-question feedback object {question id: {metric, output, input}}")
    for question_id, record in feedback.items():
        if not isinstance(record, dict):
            raise input_error(path, "not an object", record=question_id)
        for field, kind in (("metric", dict), ("output", str), ("input", str)):
            if not isinstance(record.get(field), kind):
                raise input_error(path, f"missing or not a {kind.__name__}", record=question_id, field=field)
    return path, feedback
