"""The retriever selector (spec lamp.md 9.3): an HF encoder plus a linear head scores every retriever's
candidate for a question; training matches softmax(scores) to softmax(labels), inference takes the argmax.

    selector = load_selector("auto", num_retrievers=6, rspg_type="Pre")   # Longformer if cached, else MiniLM
    logits = selector(*encode_candidates(selector.tokenizer, records, "Pre", selector.max_length))  # [B, R]
    loss = selection_loss(logits, label_targets(records, spec), temperature=1.0)

Where this differs from the reference, on purpose:
* the temperature divides the logits (log_softmax(logits / T)), not the log-probabilities, so the input of
  the KL divergence stays a log-distribution; the target has no temperature, as in the reference;
* Post's candidate is the (prompt, output) pair truncated from the prompt's end, so a long prompt never
  cuts off the LLM output the Post selector exists to read (the reference joins them with the sep token
  and cuts the end);
* any number of retrievers; training runs in one process or under torchrun (DDP), not only under DDP.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from data.errors import InputError
from data.tasks import TaskSpec

RSPG_TYPES = ("Pre", "Post")
LONGFORMER = "allenai/longformer-base-4096"     # the reference's encoder, used when it is in the HF cache
HEAD_FILE = "scoring_head.pt"
SELECTOR_FILE = "selector.json"


class Selector(nn.Module):
    """Encoder -> pooled first token -> Linear(hidden, 1): one score per candidate text."""

    def __init__(self, encoder, tokenizer, max_length: int):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask, num_retrievers: int):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        # The reference's head reads pooler_output (dense + tanh on the first token); encoders without a
        # pooler use the first token's hidden state.
        pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else out.last_hidden_state[:, 0]
        return self.head(pooled).view(-1, num_retrievers)

    def save(self, folder: str | os.PathLike, **facts) -> Path:
        """The encoder folder (loadable by from_pretrained), the head, and selector.json with ``facts``."""
        from data.io import atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        torch.save(self.head.state_dict(), folder / HEAD_FILE)
        atomic_write_json(folder / SELECTOR_FILE, {"max_length": self.max_length, **facts})
        return folder


def load_selector(encoder_name: str, max_length: int = 512, device=None, seed: int = 0) -> Selector:
    """A fresh selector on ``encoder_name`` ("auto", "default", a folder or a cached hub id), its head
    initialized from ``seed``, or a saved one (a folder with selector.json: its head is loaded too)."""
    from lm import load_encoder, resolve_encoder

    encoder = load_encoder(resolve_encoder(encoder_name, LONGFORMER), device=device)
    limit = min(max_length, encoder.max_length or max_length)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        selector = Selector(encoder.model, encoder.tokenizer, limit)
    head = Path(encoder_name) / HEAD_FILE
    if head.is_file():
        selector.head.load_state_dict(torch.load(head, map_location="cpu"))
    return selector.to(encoder.device)


def saved_facts(folder: str | os.PathLike) -> dict:
    path = Path(folder) / SELECTOR_FILE
    if not path.is_file():
        raise InputError(f"{folder}: not a saved selector (no {SELECTOR_FILE}); give --model_path the model "
                         "folder rspg.rspg --do_train printed")
    return json.loads(path.read_text(encoding="utf-8"))


def candidate_texts(record: dict, rspg_type: str) -> list:
    """Per retriever, what the selector reads: its prompt (Pre) or the (prompt, LLM output) pair (Post).

    Prompts are lowercased as the reference's dataset does; outputs are not."""
    if rspg_type not in RSPG_TYPES:
        raise InputError(f"--rspg_type must be one of {', '.join(RSPG_TYPES)}, got {rspg_type!r}")
    prompts = [text.lower() for text in record["inputs"]]
    if rspg_type == "Pre":
        return prompts
    return list(zip(prompts, record["outputs"]))


def encode_candidates(tokenizer, records: Sequence[dict], rspg_type: str, max_length: int):
    """(input_ids, attention_mask, num_retrievers) of every record's candidates, record after record."""
    texts = [text for record in records for text in candidate_texts(record, rspg_type)]
    if rspg_type == "Pre":
        batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    else:
        prompts, outputs = zip(*texts)
        batch = tokenizer(list(prompts), list(outputs), truncation="only_first", max_length=max_length,
                          padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"], len(records[0]["inputs"])


def label_targets(records: Sequence[dict], spec: TaskSpec) -> torch.Tensor:
    """The labels the softmax target is made of: the metric itself when higher is better; for an error
    metric (MAE of ratings) 1 - error / worst possible error for that gold, the reference's (w - mae) / w
    with w the gold's distance to the farther end of the task's rating labels."""
    from eval.metrics import METRICS

    metric = records[0]["metric"]
    labels = torch.tensor([record["labels"] for record in records], dtype=torch.float32)
    if METRICS[metric].higher_is_better:
        return labels
    if not spec.labels:
        raise InputError(f"{spec.name}: {metric} is an error metric but the task has no rating labels to bound it")
    low, high = min(map(float, spec.labels)), max(map(float, spec.labels))
    golds = torch.tensor([float(record["gold"]) for record in records])
    worst = torch.maximum((golds - low).abs(), (golds - high).abs()).clamp(min=1e-9).unsqueeze(1)
    return (worst - labels) / worst


def selection_loss(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(targets) || softmax(logits / T)), averaged over questions (KLDivLoss "batchmean")."""
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    return nn.functional.kl_div(log_probs, torch.softmax(targets, dim=-1), reduction="batchmean")


def best_indices(records: Sequence[dict]) -> list[int]:
    """The oracle: per question, the retriever with the best label (first on ties), by the metric's direction."""
    from eval.metrics import METRICS

    sign = 1.0 if METRICS[records[0]["metric"]].higher_is_better else -1.0
    return [max(range(len(record["labels"])), key=lambda i: sign * record["labels"][i]) for record in records]


@torch.inference_mode()
def select(selector: Selector, records: Sequence[dict], rspg_type: str, batch_size: int = 8,
           progress: bool = True) -> list[int]:
    """Per question, the index of the retriever whose candidate scores highest."""
    from tqdm.auto import tqdm

    selector.eval()
    device = next(selector.parameters()).device
    chosen = []
    for start in tqdm(range(0, len(records), batch_size), desc=f"select {rspg_type}", unit="batch",
                      disable=not progress):
        input_ids, mask, count = encode_candidates(selector.tokenizer, records[start:start + batch_size],
                                                   rspg_type, selector.max_length)
        chosen += selector(input_ids.to(device), mask.to(device), count).argmax(dim=-1).tolist()
    return chosen
