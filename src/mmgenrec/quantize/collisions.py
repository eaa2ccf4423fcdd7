"""Collision statistics and resolution for semantic-ID code tuples.

Two items collide when their whole code tuple (one code per level) is identical. ``nearest_free`` resolves
collisions on the last level only: within a group of items sharing a prefix (all levels but the last), every code
tuple keeps its closest item and each other item moves to the nearest last-level code that nobody with that prefix
uses yet. A prefix shared by more items than the codebook has codes cannot be fixed this way and raises ValueError
(no fallback to earlier levels: a larger codebook, more levels or more training is the right fix).
"""

from __future__ import annotations

import numpy as np


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
