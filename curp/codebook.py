"""Product-quantized codebook and CURP's stage-1 loss (spec curp_cope_oppu.md 2.2).

An embedding of width D is split into M sub-spaces of width D / M; each sub-space has its own K code
words and is replaced by its nearest one (L2). No straight-through estimator: the codebook only learns
from the codebook term (and the diversity term), as in CURP_code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from curp.kmeans import balanced_kmeans
from data.io import atomic_open


class ProductQuantizer(nn.Module):
    def __init__(self, embedding_dim: int, num_subspaces: int, codebook_size: int):
        super().__init__()
        if embedding_dim % num_subspaces:
            raise ValueError(f"embedding width {embedding_dim} is not divisible by {num_subspaces} sub-spaces")
        self.embedding_dim, self.num_subspaces, self.codebook_size = embedding_dim, num_subspaces, codebook_size
        self.subspace_dim = embedding_dim // num_subspaces
        # The reference's start without k-means: N(0, 1) code words.
        self.codebooks = nn.Parameter(torch.randn(num_subspaces, codebook_size, self.subspace_dim))

    def split(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [M, n, D / M] (n = all leading positions flattened)."""
        flat = embeddings.reshape(-1, self.num_subspaces, self.subspace_dim)
        return flat.transpose(0, 1)

    def codes(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[..., M] index of the nearest code word per sub-space."""
        with torch.no_grad():
            distances = torch.cdist(self.split(embeddings).to(self.codebooks.dtype), self.codebooks)  # [M, n, K]
            indices = distances.argmin(-1).T                                                           # [n, M]
        return indices.reshape(*embeddings.shape[:-1], self.num_subspaces)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """[..., M] code indices -> [..., D] concatenated code words (differentiable in the codebooks)."""
        flat = indices.reshape(-1, self.num_subspaces)
        words = self.codebooks[torch.arange(self.num_subspaces), flat]                                 # [n, M, D/M]
        return words.reshape(*indices.shape[:-1], self.embedding_dim)

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantized [..., D], indices [..., M])."""
        indices = self.codes(embeddings)
        return self.lookup(indices), indices

    def initialize(self, embeddings: torch.Tensor, max_iterations: int, generator: torch.Generator) -> list[int]:
        """Balanced k-means per sub-space; returns the iterations each took."""
        iterations = []
        with torch.no_grad():
            for subspace, points in enumerate(self.split(embeddings.float())):
                result = balanced_kmeans(points, self.codebook_size, max_iterations, generator)
                self.codebooks[subspace] = result.centroids
                iterations.append(result.iterations)
        return iterations

    def config(self) -> dict:
        return {"embedding_dim": self.embedding_dim, "num_subspaces": self.num_subspaces,
                "codebook_size": self.codebook_size, "subspace_dim": self.subspace_dim}


@dataclass
class LossWeights:
    """step1.sh's weights (the code defaults are 1.0 / 0.1 / 0.3)."""
    codebook: float = 1.0
    diversity: float = 0.15
    usage: float = 1.0


# The reference's collapse branch: fixed penalties, and the diversity weight grows 5x for good.
COLLAPSE_DIVERSITY, COLLAPSE_USAGE, COLLAPSE_DIVERSITY_BOOST = 10.0, 1.0, 5.0


def usage_penalty(indices: torch.Tensor, codebook_size: int) -> float:
    """The reference's usage term from integer counts (no gradient): distinct codes overall and per
    sub-space, distinct code tuples, and the entropy of the summed counts. indices: [n, M]."""
    num_vectors, num_subspaces = indices.shape
    counts = torch.stack([torch.bincount(indices[:, m], minlength=codebook_size) for m in range(num_subspaces)])
    summed = counts.sum(0)
    overall = 1 - int((summed > 0).sum()) / codebook_size
    per_subspace = 1 - float((counts > 0).sum(1).float().mean()) / codebook_size
    combos = 1 - len(torch.unique(indices, dim=0)) / min(codebook_size ** num_subspaces, num_vectors)
    frequency = summed[summed > 0].float() / summed.sum()
    entropy = 1 - float(-(frequency * frequency.log()).sum()) / math.log(codebook_size)
    return 0.7 * (0.4 * overall + 0.3 * per_subspace + 0.3 * combos) + 0.3 * entropy


def diversity_penalty(quantizer: ProductQuantizer, indices: torch.Tensor) -> torch.Tensor:
    """-5 tanh(d / 5), d = mean over sub-spaces of the smallest distance between code words used in the batch."""
    minima = []
    for subspace in range(quantizer.num_subspaces):
        used = torch.unique(indices[:, subspace])
        if len(used) < 2:      # one code word has no pairwise distance (inferred: the reference would fail)
            continue
        # pdist: only pairs i < j, so no zero self-distance (whose gradient is NaN).
        minima.append(torch.pdist(quantizer.codebooks[subspace, used]).min())
    return -5 * torch.tanh(torch.stack(minima).mean() / 5)


def stage1_loss(quantizer: ProductQuantizer, embeddings: torch.Tensor, weights: LossWeights,
                diversity_boost: float, model: nn.Module | None = None) -> tuple[torch.Tensor, dict, bool]:
    """(total loss, its parts, collapsed?) of one batch of embeddings [..., D].

    ``model``: what to call forward on (the DDP wrapper when distributed), defaults to the quantizer.
    """
    quantized, indices = (model or quantizer)(embeddings)
    embeddings = embeddings.to(quantized.dtype)
    codebook_term = (nn.functional.mse_loss(quantized.detach(), embeddings)
                     + nn.functional.mse_loss(quantized, embeddings.detach()))
    flat = indices.reshape(-1, quantizer.num_subspaces)
    distinct = sum(len(torch.unique(flat[:, m])) for m in range(quantizer.num_subspaces)) / quantizer.num_subspaces
    collapsed = distinct <= 1
    if collapsed:
        diversity, usage = torch.tensor(COLLAPSE_DIVERSITY), COLLAPSE_USAGE
    else:
        diversity, usage = diversity_penalty(quantizer, flat), usage_penalty(flat, quantizer.codebook_size)
    total = (weights.codebook * codebook_term + weights.diversity * diversity_boost * diversity
             + weights.usage * usage)
    parts = {"codebook": codebook_term.item(), "diversity": float(diversity.detach()), "usage": float(usage)}
    return total, parts, collapsed


def usage_report(quantizer: ProductQuantizer, embeddings: torch.Tensor, batch_size: int = 4096) -> dict:
    """How the codebook is used by ``embeddings`` [N, D]: codes used per sub-space, usage entropy
    (nats and normalized by log K), distinct code tuples, and the counts themselves."""
    indices = torch.cat([quantizer.codes(chunk) for chunk in embeddings.split(batch_size)])
    size = quantizer.codebook_size
    subspaces = []
    for subspace in range(quantizer.num_subspaces):
        counts = torch.bincount(indices[:, subspace], minlength=size)
        frequency = counts[counts > 0].double() / counts.sum()
        entropy = float(-(frequency * frequency.log()).sum())
        subspaces.append({"codes_used": int((counts > 0).sum()), "entropy": entropy,
                          "normalized_entropy": entropy / math.log(size) if size > 1 else 0.0,
                          "counts": counts.tolist()})
    return {"num_embeddings": len(embeddings), "codebook_size": size, "num_subspaces": quantizer.num_subspaces,
            "distinct_tuples": len(torch.unique(indices, dim=0)), "subspaces": subspaces}


def plot_usage(report: dict, path) -> None:
    """PNG: per sub-space, how many embeddings each code word takes, most used first."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, report["num_subspaces"], figsize=(5 * report["num_subspaces"], 3.5), squeeze=False)
    for subspace, (axis, stats) in enumerate(zip(axes[0], report["subspaces"])):
        counts = sorted(stats["counts"], reverse=True)
        axis.bar(range(len(counts)), counts, width=1.0)
        axis.set_title(f"sub-space {subspace}: {stats['codes_used']}/{report['codebook_size']} codes used, "
                       f"H/log K = {stats['normalized_entropy']:.3f}", fontsize=9)
        axis.set_xlabel("code word (by usage)")
        axis.set_ylabel("embeddings")
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
