"""Collision statistics and resolution for semantic-ID code tuples.

Two items collide when their whole code tuple (one code per level) is identical. Policies (:func:`resolve`):

* ``none``: keep the tuples as they are.
* ``sinkhorn`` (LC-Rec): re-assign the last-level code of every colliding group by a Sinkhorn-balanced assignment
  over the group, for at most ``max_rounds`` rounds; whatever still collides then goes through ``nearest_free``.
* ``suffix`` (TIGER): append one level whose code numbers the items sharing a tuple 0, 1, 2, ... (items that do
  not collide get 0), so every item has ``levels + 1`` codes.
* ``nearest_free``: described next.

``nearest_free`` resolves collisions on the last level only: within a group of items sharing a prefix (all levels but the last), every code
tuple keeps its closest item and each other item moves to the nearest last-level code that nobody with that prefix
uses yet. A prefix shared by more items than the codebook has codes cannot be fixed this way and raises ValueError
(no fallback to earlier levels: a larger codebook, more levels or more training is the right fix).
"""

from __future__ import annotations

import logging

import numpy as np

from mmgenrec.quantize.sinkhorn import sinkhorn_assign

log = logging.getLogger(__name__)

POLICIES = ("none", "sinkhorn", "suffix", "nearest_free")


def collision_stats(codes: np.ndarray) -> dict:
    """Counts for a ``[n_items, levels]`` code array: unique tuples, collision rate, items sharing a tuple."""
    codes = np.asarray(codes)
    n = len(codes)
    if n == 0:
        return {"n_items": 0, "n_unique": 0, "collision_rate": 0.0, "items_in_collisions": 0, "largest_group": 0}
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {
        "n_items": int(n),
        "n_unique": int(len(counts)),
        "collision_rate": float(1.0 - len(counts) / n),
        "items_in_collisions": int(counts[counts > 1].sum()),
        "largest_group": int(counts.max()),
    }


def _group_ids(rows: np.ndarray) -> np.ndarray:
    """One integer per row, equal for equal rows (works for zero-width rows too)."""
    if rows.shape[1] == 0:
        return np.zeros(len(rows), dtype=np.int64)
    _, inverse = np.unique(rows, axis=0, return_inverse=True)
    return inverse.reshape(-1)


def resolve_nearest_free(codes: np.ndarray, last_level_distances: np.ndarray) -> np.ndarray:
    """Return a copy of ``codes`` ``[n, levels]`` with every code tuple unique, changing the last level only.

    ``last_level_distances[i, c]`` is the distance of item i's last-level residual to last-level code c
    (shape ``[n, codebook_size]``). In each colliding tuple the item closest to the shared code keeps it (ties: lower
    item id); the others get the free last-level codes of their prefix, assigned greedily by increasing distance
    over all (item, free code) pairs of the prefix. Items that do not collide are never changed.
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    dist = np.asarray(last_level_distances, dtype=np.float64)
    if codes.ndim != 2 or dist.ndim != 2 or len(codes) != len(dist):
        raise ValueError(f"codes {codes.shape} and last_level_distances {dist.shape} must be [n, levels] and [n, K]")
    n, k = dist.shape
    if n == 0:
        return codes

    tuple_id = _group_ids(codes)
    tuple_size = np.bincount(tuple_id)
    colliding = tuple_size[tuple_id] > 1
    if not colliding.any():
        return codes

    prefix_id = _group_ids(codes[:, :-1])
    for prefix in np.unique(prefix_id[colliding]):
        members = np.flatnonzero(prefix_id == prefix)
        if len(members) > k:
            raise ValueError(
                f"codebook too small: {len(members)} items share the code prefix {codes[members[0], :-1].tolist()} "
                f"but the last level has only {k} codes; use a larger codebook_size, more levels or more epochs"
            )
        # The closest item of each tuple keeps its code; everyone else in a shared tuple must move.
        keepers, movers = [], []
        for code in np.unique(codes[members, -1]):
            holders = members[codes[members, -1] == code]
            best = holders[np.argmin(dist[holders, code])]  # argmin takes the first, i.e. lowest id, on ties
            keepers.append(best)
            movers.extend(h for h in holders if h != best)
        used = set(codes[keepers, -1].tolist())
        free = np.array([c for c in range(k) if c not in used], dtype=np.int64)

        # Greedy matching: cheapest (item, free code) pair first, each item and each code used once.
        movers = np.array(movers, dtype=np.int64)
        pair_cost = dist[np.ix_(movers, free)]
        placed = set()
        for flat in np.argsort(pair_cost, axis=None, kind="stable"):
            i, j = divmod(int(flat), len(free))
            if movers[i] in placed or free[j] in used:
                continue
            codes[movers[i], -1] = free[j]
            placed.add(movers[i])
            used.add(int(free[j]))
            if len(placed) == len(movers):
                break
    return codes


def resolve_suffix(codes: np.ndarray, codebook_size: int | None = None) -> np.ndarray:
    """``[n, levels + 1]``: ``codes`` plus one level numbering the items of each shared tuple by item id (0, 1, ...).

    ValueError when a tuple is shared by more items than ``codebook_size`` (the suffix level's codes).
    """
    codes = np.asarray(codes, dtype=np.int64)
    group = _group_ids(codes)
    suffix = np.zeros(len(codes), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, g in enumerate(group.tolist()):  # item order: the lowest id of a group gets 0
        suffix[i] = seen.get(g, 0)
        seen[g] = suffix[i] + 1
    if codebook_size is not None and len(codes) and suffix.max() >= codebook_size:
        raise ValueError(f"codebook too small: {int(suffix.max()) + 1} items share one code tuple but the suffix level "
                         f"has only {codebook_size} codes; use a larger codebook_size, more levels or more epochs")
    return np.concatenate([codes, suffix[:, None]], axis=1)


def resolve_sinkhorn(codes: np.ndarray, last_level_distances: np.ndarray, *, epsilon: float = 0.003,
                     iters: int = 50, max_rounds: int = 20) -> tuple[np.ndarray, dict]:
    """LC-Rec's re-assignment: each round, every group of items sharing a tuple gets its last-level codes from a
    Sinkhorn-balanced assignment of the group's last-level distances (which spreads the group over the codes);
    rounds repeat while collisions remain, at most ``max_rounds``. Items still colliding afterwards are resolved by
    :func:`resolve_nearest_free`. Returns the codes and ``{"rounds", "fallback_items"}``.
    """
    codes = np.array(codes, dtype=np.int64, copy=True)
    dist = np.asarray(last_level_distances, dtype=np.float64)
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        group = _group_ids(codes)
        size = np.bincount(group)
        colliding = np.flatnonzero(size > 1)
        if len(colliding) == 0:
            rounds -= 1
            break
        for g in colliding:
            members = np.flatnonzero(group == g)
            codes[members, -1] = sinkhorn_assign(dist[members], epsilon, iters).numpy()
    before_fallback = collision_stats(codes)["items_in_collisions"]
    if before_fallback:
        log.info("sinkhorn policy: %d items still collide after %d rounds; nearest_free for them", before_fallback,
                 rounds)
        codes = resolve_nearest_free(codes, dist)
    return codes, {"rounds": rounds, "fallback_items": int(before_fallback)}


def resolve(policy: str, codes: np.ndarray, last_level_distances: np.ndarray, *, codebook_size: int,
            sinkhorn_epsilon: float = 0.003, sinkhorn_iters: int = 50,
            max_rounds: int = 20) -> tuple[np.ndarray, dict]:
    """Apply a collision ``policy`` (see the module doc); return the new codes and facts about the run."""
    if policy == "none":
        return np.asarray(codes, dtype=np.int64), {}
    if policy == "nearest_free":
        return resolve_nearest_free(codes, last_level_distances), {}
    if policy == "suffix":
        return resolve_suffix(codes, codebook_size), {}
    if policy == "sinkhorn":
        return resolve_sinkhorn(codes, last_level_distances, epsilon=sinkhorn_epsilon, iters=sinkhorn_iters,
                                max_rounds=max_rounds)
    raise ValueError(f"collision_policy must be one of {POLICIES}, got {policy!r}")
