"""Stage 1: train the product-quantized codebook on fixed history embeddings (spec curp_cope_oppu.md 2.2).

Balanced k-means initialization per sub-space on a seeded sample, then AdamW on the codebooks with the
stage-1 loss over batches of ``batch_size`` groups of ``group_size`` consecutive embeddings (the
reference's "his_len" groups). Checkpoints hold the codebooks, the optimizer, the step, the collapse
boost and the RNG state; the batch order of every epoch comes from a generator seeded by (seed, epoch),
so a run stopped at any checkpoint and resumed ends with exactly the codebook of an uninterrupted run.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from curp.codebook import (COLLAPSE_DIVERSITY_BOOST, LossWeights, ProductQuantizer, plot_usage, stage1_loss,
                           usage_report)
from curp.optim import OptimizerOptions, epoch_order, load_result
from data.cli import option
from data.fingerprint import fingerprint
from runtime.distributed import load_state, save_state
from data.io import atomic_write_json

log = logging.getLogger("lampkit.curp")

CHECKPOINT_FILE = "checkpoint.pt"
CODEBOOK_FILE = "codebook.pt"
USAGE_FILE = "usage.json"
USAGE_PLOT = "usage.png"


@dataclass
class CodebookOptions:
    """The codebook and its loss (defaults: CURP_code's step1.sh); AdamW and length: curp.optim.OptimizerOptions."""

    num_subspaces: int = option(2, "product-quantization sub-spaces M (the embedding width must divide by it)", minimum=1)
    codebook_size: int = option(1000, "code words K per sub-space", minimum=2)
    init_sample_size: int = option(10000, "embeddings sampled for the balanced k-means start (all when fewer)", minimum=1)
    kmeans_max_iters: int = option(100, "balanced k-means iterations at most; 0 = random N(0, 1) start", minimum=0)
    group_size: int = option(8, "consecutive embeddings per group (CURP_code's batch_size_per_sample)", minimum=1)
    batch_size: int = option(32, "groups per optimizer step (over all processes)", minimum=1)
    codebook_weight: float = option(1.0, "weight of MSE(sg(q), e) + MSE(q, sg(e))")
    diversity_weight: float = option(0.15, "weight of -5 tanh(min code-word distance / 5)")
    usage_weight: float = option(1.0, "weight of the code-usage term")

    def weights(self) -> LossWeights:
        return LossWeights(self.codebook_weight, self.diversity_weight, self.usage_weight)


def check_shapes(vectors: torch.Tensor, options: CodebookOptions, where) -> None:
    from data.errors import input_error

    if vectors.shape[1] % options.num_subspaces:
        raise input_error(where, f"embedding width {vectors.shape[1]} does not divide into "
                                 f"{options.num_subspaces} sub-spaces (--num_subspaces)")
    sample = min(options.init_sample_size, len(vectors))
    if options.kmeans_max_iters and sample < options.codebook_size:
        raise input_error(where, f"{sample} embeddings for k-means but --codebook_size {options.codebook_size}: "
                                 "need at least one embedding per code word")


def initialized_quantizer(vectors: torch.Tensor, options: CodebookOptions, seed: int) -> ProductQuantizer:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    quantizer = ProductQuantizer(vectors.shape[1], options.num_subspaces, options.codebook_size)
    if options.kmeans_max_iters:
        sample = vectors[torch.randperm(len(vectors), generator=generator)[:options.init_sample_size]]
        iterations = quantizer.initialize(sample, options.kmeans_max_iters, generator)
        log.info("balanced k-means on %d embeddings: %s iterations per sub-space", len(sample), iterations)
    return quantizer


def settings_key(vectors: torch.Tensor, options: CodebookOptions, optim: OptimizerOptions) -> str:
    """What the result depends on: a checkpoint of other settings or embeddings is never resumed."""
    return fingerprint({"options": asdict(options), "optim": optim.settings(),
                        "embeddings": fingerprint(vectors.numpy().tobytes())})


def train_codebook(vectors: torch.Tensor, options: CodebookOptions, optim: OptimizerOptions, output_dir: Path,
                   accelerator, extra: dict | None = None) -> ProductQuantizer:
    """Train (or resume) and write codebook.pt, usage.json and usage.png into ``output_dir``."""
    key = settings_key(vectors, options, optim)
    checkpoint_path = output_dir / CHECKPOINT_FILE
    state = load_state(checkpoint_path, key)
    quantizer = initialized_quantizer(vectors, options, optim.seed) if state is None else \
        ProductQuantizer(vectors.shape[1], options.num_subspaces, options.codebook_size)
    optimizer = optim.adamw(quantizer.parameters())
    step, boost = 0, 1.0
    if state is not None:
        quantizer.load_state_dict(state["quantizer"])
        optimizer.load_state_dict(state["optimizer"])
        step, boost = state["step"], state["diversity_boost"]
        torch.set_rng_state(state["rng"])
    # Forward passes go through the prepared (DDP-wrapped when distributed) module, so gradients sync.
    model, optimizer = accelerator.prepare(quantizer, optimizer)
    groups = vectors[: max(1, len(vectors) // options.group_size) * options.group_size]
    groups = groups.reshape(-1, min(options.group_size, len(vectors)), vectors.shape[1])
    steps_per_epoch = math.ceil(len(groups) / options.batch_size)
    total_steps = steps_per_epoch * optim.num_epochs

    def checkpoint() -> None:
        if accelerator.is_main_process:
            save_state(checkpoint_path, {"key": key, "quantizer": quantizer.state_dict(), "step": step,
                                         "optimizer": optimizer.state_dict(), "diversity_boost": boost,
                                         "rng": torch.get_rng_state()})

    with tqdm(total=total_steps, initial=step, desc="stage 1", unit="step",
              disable=not accelerator.is_main_process) as bar:
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)
            batch = epoch_order(len(groups), optim.seed, epoch).split(options.batch_size)[position]
            # Each process takes its share of the step's groups.
            share = batch[accelerator.process_index::accelerator.num_processes]
            loss, parts, collapsed = stage1_loss(quantizer, groups[share].to(accelerator.device), options.weights(),
                                                 boost, model)
            if collapsed and boost == 1.0:
                log.info("codebook collapse at step %d: diversity weight x%g from now on", step, COLLAPSE_DIVERSITY_BOOST)
                boost = COLLAPSE_DIVERSITY_BOOST
            optim.step(accelerator, optimizer, loss, quantizer.parameters())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", **{k: f"{v:.3f}" for k, v in parts.items()})
            if step % optim.save_steps == 0 or step % steps_per_epoch == 0:
                checkpoint()
                if step % steps_per_epoch == 0:
                    log.info("epoch %d: loss %.4f %s", step // steps_per_epoch, loss.item(), parts)
    if accelerator.is_main_process:
        write_results(quantizer.cpu(), vectors, {**asdict(options), **optim.settings()}, output_dir, key, step,
                      extra or {})
    return quantizer


def write_results(quantizer: ProductQuantizer, vectors: torch.Tensor, settings: dict, output_dir: Path,
                  key: str, step: int, extra: dict) -> None:
    save_state(output_dir / CODEBOOK_FILE, {"codebooks": quantizer.codebooks.detach().clone(), **quantizer.config(),
                                             "key": key, "steps": step, "options": settings, **extra})
    report = usage_report(quantizer, vectors)
    atomic_write_json(output_dir / USAGE_FILE, report)
    plot_usage(report, output_dir / USAGE_PLOT)


def load_codebook(path: Path) -> ProductQuantizer:
    """The trained quantizer of a stage-1 folder or codebook.pt file (frozen)."""
    state = load_result(path, CODEBOOK_FILE, "curp.train_codebook")
    quantizer = ProductQuantizer(state["embedding_dim"], state["num_subspaces"], state["codebook_size"])
    quantizer.codebooks.data.copy_(state["codebooks"])
    return quantizer.requires_grad_(False).eval()
