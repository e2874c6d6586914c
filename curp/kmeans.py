"""Balanced k-means as CURP_code initializes its codebooks (spec curp_cope_oppu.md 2.2), vectorized.

Every iteration: clusters 0..K-1 in order each take the ``w = N // K`` nearest points still unassigned
(distances to the centroids at the start of the iteration) and move their centroid to the mean of those
``w``; points left over (N mod K) join their nearest updated centroid. Stop when the assignments repeat.

Hand-written because no library does this exact greedy order (scikit-learn and faiss k-means are not
capacity-bound; optimal-transport balancing gives another partition). The greedy order is sequential,
but clusters rarely compete for the same points: each round lets ALL remaining clusters pick their
``w`` nearest free points at once from a short candidate list (refreshed from the free points when
it runs dry), then accepts the longest prefix (in
cluster order) whose picks no earlier cluster of the round took - exactly what the sequential pass
would have picked. A round costs a few tensor operations; there is one round per conflict, not per cluster.
``balanced_kmeans_reference`` is the straightforward per-cluster loop, kept for tests and the benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Candidates per cluster, in multiples of the capacity w: enough that the w nearest free points are
# almost always among them; when the next cluster's run out, all lists are rebuilt from the free points.
CANDIDATE_FACTOR = 4
# Clusters whose candidate lists are rebuilt at once when the next one's list runs dry.
REFRESH_CLUSTERS = 64


@dataclass
class KMeansResult:
    centroids: torch.Tensor      # [K, d]
    assignments: torch.Tensor    # [N] cluster of every point
    iterations: int
    converged: bool


def squared_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """[K, N] squared L2 distances (one matrix product, not N*K*d differences)."""
    return ((centroids * centroids).sum(1, keepdim=True) - 2 * centroids @ points.T
            + (points * points).sum(1)[None, :])


def initial_centroids(points: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """K distinct random points (the reference's start)."""
    return points[torch.randperm(len(points), generator=generator)[:num_clusters]].clone()


def _check(points: torch.Tensor, num_clusters: int) -> int:
    if points.ndim != 2:
        raise ValueError(f"points must be [N, d], got shape {tuple(points.shape)}")
    if not 1 <= num_clusters <= len(points):
        raise ValueError(f"need 1 <= K <= N, got K={num_clusters}, N={len(points)}")
    return len(points) // num_clusters


def _finish(points, centroids, assignments, iterations, converged) -> KMeansResult:
    """The reference's final pass: every centroid becomes the mean of all its members (leftovers included)."""
    sums = torch.zeros_like(centroids).index_add_(0, assignments, points)
    counts = torch.bincount(assignments, minlength=len(centroids)).clamp(min=1).to(points.dtype)
    return KMeansResult(sums / counts[:, None], assignments, iterations, converged)


def _greedy_pass(points: torch.Tensor, centroids: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration of the sequential greedy fill, computed in conflict rounds; returns (assignments, centroids)."""
    num_clusters, num_points = len(centroids), len(points)
    distances = squared_distances(points, centroids)                              # [K, N]
    num_candidates = min(num_points, CANDIDATE_FACTOR * capacity)
    candidates = distances.topk(num_candidates, dim=1, largest=False, sorted=True).indices   # [K, m]
    assignments = torch.full((num_points,), -1, dtype=torch.long)
    picks = torch.empty(num_clusters, capacity, dtype=torch.long)
    cluster_ids = torch.arange(num_clusters)
    start = 0
    while start < num_clusters:
        block = cluster_ids[start:]
        free = assignments[candidates] < 0                                         # [B, m]
        rank = free.cumsum(1)
        enough = rank[:, -1] >= capacity
        if not enough[0]:
            # The round's first cluster ran out of candidates: rebuild the lists of the next clusters from
            # the free points. Older lists stay valid: a point taken when a list was built stays taken.
            num_free = int((assignments < 0).sum())
            width = min(num_candidates, num_free)
            rows = len(block) if width < candidates.shape[1] else min(len(block), REFRESH_CLUSTERS)
            fresh = distances[start:start + rows].masked_fill(assignments[None, :] >= 0, float("inf"))
            fresh = fresh.topk(width, dim=1, largest=False, sorted=True).indices
            candidates = fresh if rows == len(block) else torch.cat([fresh, candidates[rows:]])
            continue
        chosen = free & (rank <= capacity)
        # Which cluster of this round picked each point first; a cluster is clean when it was first on all its picks.
        first = torch.full((num_points,), num_clusters, dtype=torch.long)
        rows, cols = chosen.nonzero(as_tuple=True)
        picked_points = candidates[rows, cols]
        first.scatter_reduce_(0, picked_points, block[rows], reduce="amin")
        lost = torch.zeros(len(block), dtype=torch.bool)
        lost.index_fill_(0, rows[first[picked_points] != block[rows]], True)
        accepted = int((enough & ~lost).long().cumprod(0).sum())
        keep = rows < accepted
        picks[start:start + accepted] = picked_points[keep].view(accepted, capacity)
        assignments[picked_points[keep]] = block[rows[keep]]
        start += accepted
        candidates = candidates[accepted:]
    centroids = points[picks].mean(1)
    leftovers = (assignments < 0).nonzero(as_tuple=True)[0]
    if len(leftovers):
        assignments[leftovers] = squared_distances(points[leftovers], centroids).argmin(0)
    return assignments, centroids


def balanced_kmeans(points: torch.Tensor, num_clusters: int, max_iterations: int = 100,
                    generator: torch.Generator | None = None, centroids: torch.Tensor | None = None) -> KMeansResult:
    """Balanced k-means of ``points`` [N, d] into ``num_clusters`` clusters of N // K (+ leftovers)."""
    capacity = _check(points, num_clusters)
    generator = generator or torch.Generator().manual_seed(0)
    centroids = initial_centroids(points, num_clusters, generator) if centroids is None else centroids.clone()
    previous = None
    for iteration in range(1, max_iterations + 1):
        assignments, centroids = _greedy_pass(points, centroids, capacity)
        if previous is not None and torch.equal(assignments, previous):
            return _finish(points, centroids, assignments, iteration, True)
        previous = assignments
    return _finish(points, centroids, previous, max_iterations, False)


def balanced_kmeans_reference(points: torch.Tensor, num_clusters: int, max_iterations: int = 100,
                              generator: torch.Generator | None = None,
                              centroids: torch.Tensor | None = None) -> KMeansResult:
    """The same algorithm as a plain loop over clusters (distances per cluster to the free points)."""
    capacity = _check(points, num_clusters)
    generator = generator or torch.Generator().manual_seed(0)
    centroids = initial_centroids(points, num_clusters, generator) if centroids is None else centroids.clone()
    previous = None
    for iteration in range(1, max_iterations + 1):
        assignments = torch.full((len(points),), -1, dtype=torch.long)
        for cluster in range(num_clusters):
            free = (assignments < 0).nonzero(as_tuple=True)[0]
            distances = squared_distances(points[free], centroids[cluster:cluster + 1])[0]
            nearest = free[distances.topk(capacity, largest=False, sorted=True).indices]
            assignments[nearest] = cluster
            centroids[cluster] = points[nearest].mean(0)
        leftovers = (assignments < 0).nonzero(as_tuple=True)[0]
        if len(leftovers):
            assignments[leftovers] = squared_distances(points[leftovers], centroids).argmin(0)
        if previous is not None and torch.equal(assignments, previous):
            return _finish(points, centroids, assignments, iteration, True)
        previous = assignments
    return _finish(points, centroids, previous, max_iterations, False)
