"""Reading, validating and splitting enrichment records (the ``enriched.json`` contract)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from mmgenrec.enrich import FIELDS
from mmgenrec.io import InputError, read_json

log = logging.getLogger(__name__)


def schema_problems(rec, max_list_items: int = 30) -> list[str]:
    """What is wrong with one record (empty list: it is valid). Used by the client and by the checks."""
    if not isinstance(rec, dict):
        return [f"expected an object, got {type(rec).__name__}"]
    problems = [f"missing field {f!r}" for f in FIELDS if f not in rec]
    title = rec.get("enhanced_title")
    if "enhanced_title" in rec and not (isinstance(title, str) and title.strip()):
        problems.append("enhanced_title: expected a non-empty string")
    for key in ("tags", "highlights"):
        if key not in rec:
            continue
        v = rec[key]
        if not isinstance(v, list):
            problems.append(f"{key}: expected a list of strings")
        elif not v:
            problems.append(f"{key}: empty list")
        elif len(v) > max_list_items:
            problems.append(f"{key}: {len(v)} entries (more than {max_list_items})")
        elif not all(isinstance(x, str) and x.strip() for x in v):
            problems.append(f"{key}: every entry must be a non-empty string")
    if "characteristics" in rec:
        v = rec["characteristics"]
        if isinstance(v, dict):
            values = list(v.values())
            if not all(isinstance(k, str) and k.strip() for k in v):
                problems.append("characteristics: every key must be a non-empty string")
        elif isinstance(v, list):
            values = v
        else:
            problems.append("characteristics: expected a list of strings or an object of strings")
            values = None
        if values is not None:
            if not values:
                problems.append("characteristics: empty")
            elif len(values) > max_list_items:
                problems.append(f"characteristics: {len(values)} entries (more than {max_list_items})")
            elif not all(isinstance(x, str) and x.strip() for x in values):
                problems.append("characteristics: every value must be a non-empty string")
    if "has_image" in rec and not isinstance(rec["has_image"], bool):
        problems.append("has_image: expected true or false")
    return problems


def read_id_map(path: str | Path) -> dict[str, str]:
    """``<asin>\\t<id>`` lines -> {asin: id (str)}."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[1].isdigit():
                raise InputError(f"{path}: line {lineno}: expected '<asin>\\t<id>', got {line[:80]!r}")
            out[parts[0]] = parts[1]
    return out


def load_provided(path: str | Path, item_json: str | Path, *, keys: str = "item_id",
                  item2id: str | Path | None = None) -> dict[str, dict]:
    """A provided ``item_enriched_v2.json`` -> {our item id: record}, keyed as ``keys`` says (``item_id`` or
    ``asin``, mapped through ``item2id``). Records are kept as given (the checks judge them); keys that are not
    items of the category are errors; items of ``item.json`` missing from the file are allowed (coverage)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object keyed by {keys}")
    items = read_json(item_json)
    if keys == "asin":
        if item2id is None:
            raise InputError(f"{path}: keyed by asin, but no item2id map was given")
        asin2id = read_id_map(item2id)
        unknown = [k for k in data if k not in asin2id]
        # Asins dropped by the 5-core filter are not errors: they are simply not items of the prepared category.
        log.info("%s: %d asins are not items of the prepared category (dropped by the preparation)", path,
                 len(unknown))
        data = {asin2id[k]: v for k, v in data.items() if k in asin2id}
    elif keys != "item_id":
        raise ValueError(f"enrich.provided_keys must be item_id or asin, not {keys!r}")
    for key in data:
        if key not in items:
            raise InputError(f"{path}: item {key!r} is not an item of {item_json}")
    return {k: data[k] for k in sorted(data, key=int)}


def heldout_split(item_ids, fraction: float, seed: int) -> dict[str, list[str]]:
    """Items with an enrichment -> {"train": [...], "heldout": [...]} (sorted ids; ``round(fraction * n)`` held out,
    at least one when ``fraction`` > 0 and there are two or more items)."""
    ids = sorted(item_ids, key=int)
    n_out = round(fraction * len(ids))
    if fraction > 0 and len(ids) >= 2:
        n_out = max(1, min(n_out, len(ids) - 1))
    heldout = set(random.Random(seed).sample(ids, n_out))
    return {"train": [i for i in ids if i not in heldout], "heldout": [i for i in ids if i in heldout]}
