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

__all__ = ["target_ranks", "per_user_metrics", "rank_metrics", "popularity_topk", "paired_bootstrap",
           "collision_groups", "collided_items"]


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


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_boot: int = 1000, seed: int = 0,
                     ci: float = 0.95, chunk: int = 200) -> dict[str, float]:
    """Paired bootstrap of ``mean(a) - mean(b)`` over users (``a[i]``, ``b[i]``: the same user under two methods).

    Users are resampled with replacement ``n_boot`` times (numpy ``default_rng(seed)``, so the interval is
    reproducible); the interval is the percentile interval of the resampled differences. ``p_value`` is the
    two-sided bootstrap p-value of "no difference": twice the smaller share of resampled differences on either
    side of 0 (capped at 1). Returns ``diff``, ``ci_low``, ``ci_high``, ``p_value``, ``n_users``, ``n_boot``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("no users to bootstrap")
    if n_boot < 1 or not 0 < ci < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < ci < 1, got {n_boot}, {ci}")
    d = a - b
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for start in range(0, n_boot, chunk):  # [chunk, n] index blocks keep memory bounded for 10^5 users
        m = min(chunk, n_boot - start)
        boots[start:start + m] = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    p = min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean()))
    return {"diff": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p),
            "n_users": int(d.size), "n_boot": int(n_boot)}


def collision_groups(index: dict[int, Sequence[str]]) -> dict[tuple[str, ...], list[int]]:
    """Token tuple -> the items (ascending ids) that carry it; a group of 2+ items is a collision."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for item in sorted(index):
        groups.setdefault(tuple(index[item]), []).append(int(item))
    return groups


def collided_items(index: dict[int, Sequence[str]]) -> set[int]:
    """Items whose token tuple is shared with at least one other item."""
    return {i for items in collision_groups(index).values() if len(items) > 1 for i in items}
