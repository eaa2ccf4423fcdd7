"""Ranking metrics for leave-one-out sequential recommendation (one target item per user), numpy-based.

With ``rank`` the 0-based position of the target in the returned list (first occurrence):

* ``HR@k``   = 1 if rank < k else 0
* ``NDCG@k`` = 1 / log2(rank + 2) if rank < k else 0 (a single relevant item, so the ideal DCG is 1)
* ``MRR``    = 1 / (rank + 1) over the full returned list, 0 if the target is absent

Lists may be shorter than ``k`` (the target is then simply not in the top k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["target_ranks", "per_user_metrics", "rank_metrics", "popularity_topk"]


def target_ranks(topk: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
    """0-based rank of each target in its list (first occurrence), -1 when absent."""
    if len(topk) != len(targets):
        raise ValueError(f"{len(topk)} ranked lists but {len(targets)} targets")
    ranks = np.full(len(targets), -1, dtype=np.int64)
    for i, (items, target) in enumerate(zip(topk, targets)):
        for r, item in enumerate(items):
            if int(item) == int(target):
                ranks[i] = r
                break
    return ranks


def _check_ks(ks, name: str) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"{name} must be positive, got {ks}")
    return ks


def per_user_metrics(topk: Sequence[Sequence[int]], targets: Sequence[int], ks=(1, 5, 10),
                     ndcg_ks=(5, 10)) -> dict[str, np.ndarray]:
    """Metric name -> per-user values (float64 array): ``HR@k`` for ``ks``, ``NDCG@k`` for ``ndcg_ks``, ``MRR``."""
    ks, ndcg_ks = _check_ks(ks, "ks"), _check_ks(ndcg_ks, "ndcg_ks")
    ranks = target_ranks(topk, targets)
    found = ranks >= 0
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"HR@{k}"] = (found & (ranks < k)).astype(np.float64)
    gain = np.where(found, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    for k in ndcg_ks:
        out[f"NDCG@{k}"] = np.where(found & (ranks < k), gain, 0.0)
    out["MRR"] = np.where(found, 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0)
    return out


def rank_metrics(topk: Sequence[Sequence[int]], targets: Sequence[int], ks=(1, 5, 10),
                 ndcg_ks=(5, 10)) -> dict[str, float]:
    """Means over users of :func:`per_user_metrics` (same keys), as plain floats."""
    if len(targets) == 0:
        raise ValueError("no users to evaluate")
    return {name: float(values.mean()) for name, values in per_user_metrics(topk, targets, ks, ndcg_ks).items()}


def popularity_topk(train_seqs: Sequence[Sequence[int]], n_items: int, k: int) -> list[int]:
    """The ``k`` most frequent items over all training sequences, most frequent first, ties by lower id."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    flat = np.fromiter((int(i) for seq in train_seqs for i in seq), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= n_items):
        raise ValueError(f"item ids must lie in [0, {n_items}), got {flat.min()}..{flat.max()}")
    counts = np.bincount(flat, minlength=n_items)
    order = np.argsort(-counts, kind="stable")  # stable: equal counts keep ascending id order
    return [int(i) for i in order[:k]]
