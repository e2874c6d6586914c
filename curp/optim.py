"""What both CURP training stages share: AdamW settings, the seeded example order, result files (resume
states are runtime.distributed.save_state / load_state)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from data.cli import option


@dataclass
class OptimizerOptions:
    """AdamW and the training length (defaults: CURP_code's step1.sh; step 2 overrides some)."""

    learning_rate: float = option(5e-4, "AdamW learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient-norm clip")
    num_epochs: int = option(10, "passes over the training data", minimum=1)
    seed: int = option(0, "seed of the initialization and of the order of every epoch")
    save_steps: int = option(100, "checkpoint every N steps (and at each epoch's end)", minimum=1)

    def adamw(self, parameters) -> torch.optim.AdamW:
        return torch.optim.AdamW(parameters, lr=self.learning_rate, weight_decay=self.weight_decay)

    def step(self, accelerator, optimizer, loss: torch.Tensor, parameters) -> None:
        """One update: backward through accelerate (gradients averaged over processes), clip, step."""
        optimizer.zero_grad()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(parameters, self.max_grad_norm)
        optimizer.step()

    def settings(self) -> dict:
        """What changes the result (not how often it is saved)."""
        return {k: v for k, v in asdict(self).items() if k != "save_steps"}


def make_accelerator(device: str | None = None):
    """accelerate's Accelerator on the process group of runtime.distributed (gloo on CPU, nccl on GPU)."""
    from accelerate import Accelerator

    from runtime.distributed import processes

    return Accelerator(cpu=processes(device).device.type == "cpu")


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``count`` items seeded by (seed, epoch): a resumed run repeats it without saved state."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def load_result(path: Path, file_name: str, command: str) -> dict:
    """A stage's result file, given its folder or the file itself; missing -> InputError naming the command."""
    from data.errors import input_error

    path = Path(path)
    file = path / file_name if path.is_dir() else path
    if not file.is_file():
        raise input_error(file, f"not found (make it with python -m {command})")
    return torch.load(file, map_location="cpu", weights_only=True)
