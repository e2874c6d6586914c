"""Typed options of the lamp_rag scripts; ``data.cli.add_dataclass_arguments`` turns each into a flag group.

Library functions take these dataclasses, never argparse Namespaces, so a flag such as ``--max_length``
or ``--limit`` is defined in exactly one place whatever script shows it.
"""
from __future__ import annotations

from dataclasses import dataclass

from data.cli import option
from data.prompts import PROMPT_STYLES
from data.tasks import TaskSpec

# The reference's decoding in evaluate_llm/train_llm (spec lamp.md 6.2): 4 beams, 128 new tokens.
REFERENCE_NUM_BEAMS = 4
REFERENCE_MAX_NEW_TOKENS = 128


@dataclass
class InputOptions:
    """How much of each split is read."""

    limit: int | None = option(None, "use only the first N questions of each split (smoke runs)", minimum=1)


@dataclass
class PromptOptions:
    """How an example and its profile items become the prompt."""

    prompt_style: str = option("auto", "auto: 'chat' (profile items as earlier chat turns) for decoder-only chat "
                                       "models, 'official' (the LaMP string prompt, with the reference's decoding "
                                       "unless --num_beams/--max_new_tokens say otherwise) for seq2seq/FlanT5-"
                                       "style models and models without a chat template",
                               choices=("auto", *PROMPT_STYLES))
    max_length: int = option(256, "official style: token budget of the prompt shared by input and profile; the "
                                  "finished prompt is also cut to it from the right", minimum=1)
    max_item_tokens: int | None = option(None, "chat style: cut each profile item's input text to this many "
                                               "tokens (default: no cut)", minimum=1)


@dataclass
class FinetuneSettings:
    """How long and which weights to fine-tune (the hyperparameters are lamp_rag.training.TrainingOptions)."""

    num_train_epochs: float = option(10, "training epochs", minimum=0)
    lora: bool = option(False, "train a LoRA adapter instead of all weights; best_model/ then holds the adapter alone")
    merge_lora: bool = option(False, "with --lora: save best_model/ as a full model with the adapter merged in")


def default_decoding(style: str, spec: TaskSpec) -> tuple[int, int]:
    """(max_new_tokens, num_beams) when the user gives neither: the reference's for the official prompt
    (a published comparison is one flag away), else the registry's length with greedy decoding."""
    if style == "official":
        return REFERENCE_MAX_NEW_TOKENS, REFERENCE_NUM_BEAMS
    return spec.max_new_tokens, 1
