"""The semantic-ID ablation grid (tokenizer x collision policy x embedding view x embedding pooling), scored
downstream.

Each grid point is an id set ``results/<cat>/ids/ablation/<tokenizer>-<policy>-<view>-<pooling>/`` (``index.json``,
``stats.json``, and after scoring ``seqrec_metrics.json``); :func:`gather` puts every point of every category into
one table (``results/ablation_ids.csv``).

An index built with policy ``none`` may give several items the same ID. The generative model cannot tell them
apart, and the constrained decoder needs one item per ID, so :func:`collapse_collisions` scores such a run on a
copy of the data where the items sharing an ID are one item (the lowest id of the group stands for all). A
predicted shared ID then counts as a hit for every item behind it: an upper bound for that run, flagged in the
table by ``items_in_collisions_after > 0``.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pandas as pd

from mmgenrec.io import InputError, atomic_path, read_json, write_json

log = logging.getLogger(__name__)

VIEWS = ("mm", "text", "image")
METRIC_PREFIXES = ("HR@", "NDCG@", "MRR")


def run_name(tokenizer: str, policy: str, view: str, pooling: str = "content") -> str:
    return f"{tokenizer}-{policy}-{view}-{pooling}"


def grid(ablation_cfg: dict, embed_pooling: str = "content") -> list[dict]:
    """Every (tokenizer, policy, view, pooling) of the ``ablation`` config section, in config order (poolings
    default to the embed section's ``embed_pooling``)."""
    poolings = ablation_cfg.get("poolings") or [embed_pooling]
    return [{"tokenizer": t, "policy": p, "view": v, "pooling": pool, "name": run_name(t, p, v, pool)}
            for t, p, v, pool in itertools.product(ablation_cfg["tokenizers"], ablation_cfg["policies"],
                                                   ablation_cfg["views"], poolings)]


def collapse_collisions(index_json: str | Path, inter_json: str | Path, out_index: str | Path,
                        out_inter: str | Path) -> dict:
    """Write an index with one item per distinct ID (renumbered 0..m-1 by first occurrence) and the interactions
    with every item replaced by its group's new id; return ``{"items", "distinct_ids", "merged_items"}``."""
    index = read_json(index_json)
    try:
        keys = sorted(index, key=int)
    except ValueError:
        raise InputError(f"{index_json}: item ids must be integers") from None
    new_id: dict[tuple, int] = {}
    remap: dict[int, int] = {}
    for key in keys:
        remap[int(key)] = new_id.setdefault(tuple(index[key]), len(new_id))
    sequences = read_json(inter_json)
    out = {}
    for user, items in sequences.items():
        try:
            out[user] = [remap[int(i)] for i in items]
        except KeyError as e:
            raise InputError(f"{inter_json}: user {user}: item {e.args[0]} is not in {index_json}") from None
    write_json(out_index, {str(i): list(tokens) for tokens, i in new_id.items()}, indent=None)
    write_json(out_inter, out, indent=None)
    facts = {"items": len(keys), "distinct_ids": len(new_id), "merged_items": len(keys) - len(new_id)}
    log.info("collapsed colliding ids: %s", facts)
    return facts


def ablation_row(category: str, tokenizer: str, policy: str, view: str, stats_json: str | Path,
                 metrics_json: str | Path, pooling: str = "content") -> dict:
    """One table row: the grid point, its collision and code-usage stats, and its downstream metrics."""
    stats, metrics = read_json(stats_json), read_json(metrics_json)
    row = {"category": category, "tokenizer": tokenizer, "policy": policy, "view": view, "pooling": pooling,
           "levels": stats["levels"], "codebook_size": stats["codebook_size"]}
    for when in ("before", "after"):
        c = stats[f"collisions_{when}"]
        row[f"collision_rate_{when}"] = c["collision_rate"]
        row[f"items_in_collisions_{when}"] = c["items_in_collisions"]
    per_level = stats["per_level"][: stats.get("tokenizer_levels", stats["levels"])]
    row["mean_utilisation"] = sum(lv["utilisation"] for lv in per_level) / len(per_level)
    row["min_utilisation"] = min(lv["utilisation"] for lv in per_level)
    row["mean_perplexity"] = sum(lv["perplexity"] for lv in per_level) / len(per_level)
    row["reconstruction_mse"] = stats["reconstruction_mse"]
    row["quantize_seconds"] = stats["seconds"]
    row.update({k: v for k, v in metrics.items() if k.startswith(METRIC_PREFIXES)})
    row["n_users"] = metrics.get("n_users")
    row["split"] = metrics.get("split")
    after = stats["collisions_after"]
    row["merged_items"] = after["n_items"] - after["n_unique"]  # scored as one item per shared ID
    return row


def gather(runs: list[dict], csv_path: str | Path) -> pd.DataFrame:
    """``runs``: dicts with category, tokenizer, policy, view, pooling (default content), stats, metrics (paths);
    write and return the table."""
    table = pd.DataFrame([ablation_row(r["category"], r["tokenizer"], r["policy"], r["view"], r["stats"],
                                       r["metrics"], r.get("pooling", "content")) for r in runs])
    with atomic_path(csv_path, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
