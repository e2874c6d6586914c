"""Training and validation of the selector: one process, or one per rank under torchrun / accelerate launch
(DDP through runtime.distributed: gloo on CPU, nccl on GPU).

Rank 0 alone writes files. A run folder is resumed from its last saved state (model, optimizer, step) when
its training settings are the same.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from data.tasks import TaskSpec
from rspg.selector import Selector, encode_candidates, label_targets, selection_loss

log = logging.getLogger("lampkit.rspg")
STATE_FILE = "train_state.pt"


@dataclass
class TrainSettings:
    rspg_type: str
    learning_rate: float = 1e-5
    total_steps: int = 1000
    batch_size: int = 1          # questions per step and process (each brings every retriever's candidate)
    temperature: float = 1.0
    clip: float = 1.0
    save_freq: int = 500
    seed: int = 0


def step_batches(num_records: int, settings: TrainSettings, rank: int, world_size: int, step: int) -> list[int]:
    """This rank's record indices for optimizer step ``step``.

    Hand-written instead of a DistributedSampler so the order is a pure function of (seed, step): a resumed
    run continues with exactly the batches an uninterrupted one would have seen, on any number of ranks.
    Each epoch is a seeded permutation, wrapped to a multiple of world_size * batch_size.
    """
    per_step = world_size * settings.batch_size
    steps_per_epoch = math.ceil(num_records / per_step)
    epoch, position = divmod(step, steps_per_epoch)
    order = torch.randperm(num_records, generator=torch.Generator().manual_seed(settings.seed + epoch)).tolist()
    order = (order * math.ceil(steps_per_epoch * per_step / num_records))[:steps_per_epoch * per_step]
    chunk = order[position * per_step:(position + 1) * per_step]
    return chunk[rank::world_size]


def train(selector: Selector, records: Sequence[dict], spec: TaskSpec, settings: TrainSettings,
          run_dir: Path, progress: bool = True) -> list[float]:
    """Adam with a constant learning rate (the reference's "fixed" scheduler) and gradient clipping for
    ``total_steps`` steps; saves the state every ``save_freq`` steps. Returns the loss of every step."""
    from tqdm.auto import tqdm

    from data.fingerprint import fingerprint

    from runtime.distributed import load_state, processes, save_state

    dist = processes()
    rank, world_size = dist.rank, dist.world_size
    model = dist.wrap(selector)
    optimizer = torch.optim.Adam(selector.parameters(), lr=settings.learning_rate)
    key = fingerprint({"settings": asdict(settings), "ids": [record["id"] for record in records],
                       "labels": [record["labels"] for record in records], "world": world_size})
    state_path = run_dir / STATE_FILE
    start, losses = 0, []
    state = load_state(state_path, key)
    if state is not None:
        selector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = state["step"], state["losses"]
    device = next(selector.parameters()).device
    targets = label_targets(records, spec)
    selector.train()
    with tqdm(total=settings.total_steps, initial=start, desc=f"train {settings.rspg_type}", unit="step",
              disable=not progress or rank != 0) as bar:
        for step in range(start, settings.total_steps):
            rows = step_batches(len(records), settings, rank, world_size, step)
            torch.manual_seed(settings.seed + 1000 * step + rank)   # dropout per step: a resumed run matches
            input_ids, mask, count = encode_candidates(selector.tokenizer, [records[i] for i in rows],
                                                       settings.rspg_type, selector.max_length)
            logits = model(input_ids.to(device), mask.to(device), count)
            loss = selection_loss(logits, targets[rows].to(device), settings.temperature)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(selector.parameters(), settings.clip)
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            done = step + 1
            if dist.is_main_process and (done % settings.save_freq == 0 or done == settings.total_steps):
                save_state(state_path, {"key": key, "step": done, "losses": losses, "model": selector.state_dict(),
                                        "optimizer": optimizer.state_dict()})
    dist.barrier()
    return losses
