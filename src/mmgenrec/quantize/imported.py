"""Imported id sets: a ready semantic-ID index file (a user's own, the published MQL4GRec text/image IDs, the seed
study's Qwen IDs, a prepared folder's index) checked like our own and written as ``results/<cat>/ids/<set>/``.

Checks (:func:`mmgenrec.quantize.run.load_index`, every failure names the file and the item): item ids 0..n-1
without gaps, the same number of levels for every item, ``<letter_N>`` tokens with the letters of their level
(lowercase levels, then uppercase for MQL4Rec's image IDs); collisions are an error unless ``collisions: allow``
(then counted, and decoded as one trie entry standing for all its items). The index must cover exactly the
category's items: every item of ``inter.json`` has an ID and the index names no item beyond them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mmgenrec.evaluate.metrics import collision_groups
from mmgenrec.io import InputError, read_json, write_json
from mmgenrec.quantize.run import TOKEN, load_index

log = logging.getLogger(__name__)


def import_index(source: str | Path, inter_json: str | Path, index_path: str | Path, stats_path: str | Path, *,
                 collisions: str = "error") -> dict:
    """Validate ``source`` against the category's items and write it as ``index_path`` (+ ``stats_path``)."""
    if collisions not in ("error", "allow"):
        raise ValueError(f"collisions must be 'error' or 'allow', got {collisions!r}")
    index = load_index(source, allow_collisions=collisions == "allow")
    used = sorted({int(i) for seq in read_json(inter_json).values() for i in seq})
    missing = [i for i in used if i not in index]
    if missing:
        raise InputError(f"{source}: item {missing[0]} of {inter_json} has no ID ({len(missing)} items missing)")
    n_items = used[-1] + 1
    if len(index) != n_items:
        raise InputError(f"{source}: {len(index)} items, but {inter_json} has items 0..{n_items - 1}: "
                         f"item {n_items} is not an item of this category")
    groups = collision_groups(index)
    levels = len(index[0])
    codes = np.array([[int(TOKEN.fullmatch(t).group(2)) for t in index[i]] for i in range(len(index))])
    stats = {"source": str(source), "imported": True, "n_items": len(index), "levels": levels,
             "letters": "".join(TOKEN.fullmatch(t).group(1) for t in index[0]),
             "codebook_size_seen": [int(codes[:, l].max()) + 1 for l in range(levels)],
             "used_codes": [int(len(np.unique(codes[:, l]))) for l in range(levels)],
             "n_unique_ids": len(groups), "n_colliding_items": sum(len(g) for g in groups.values() if len(g) > 1),
             "collision_rate": 1 - len(groups) / len(index), "collision_policy": collisions}
    write_json(index_path, {str(i): index[i] for i in range(len(index))}, indent=None)
    write_json(stats_path, stats)
    log.info("imported %s: %d items, %d levels, %d distinct ids", source, len(index), levels, len(groups))
    return stats
