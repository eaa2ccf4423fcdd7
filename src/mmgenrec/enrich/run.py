"""The ``enrich`` rule: enriched.json + split.json (+ usage.json, failures.jsonl) from a provided file or the API."""

from __future__ import annotations

import logging
from pathlib import Path

from mmgenrec.enrich.records import heldout_split, load_provided
from mmgenrec.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


def build_enrichment(
    item_json: str | Path,
    out_dir: str | Path,
    *,
    source: str = "provided",
    provided: str | Path | None = None,
    item2id: str | Path | None = None,
    image_dir: str | Path | None = None,
    cache_path: str | Path | None = None,
    provided_keys: str = "item_id",
    heldout_fraction: float = 0.1,
    split_seed: int = 0,
    **api,
) -> dict:
    """Write ``enriched.json``, ``split.json``, ``usage.json`` and ``failures.jsonl`` into ``out_dir``."""
    out_dir = Path(out_dir)
    items = read_json(item_json)
    if source == "provided":
        if provided is None:
            raise ValueError("enrich.source: provided needs a provided file")
        enriched = load_provided(provided, item_json, keys=provided_keys, item2id=item2id)
        with atomic_path(out_dir / "failures.jsonl") as tmp:
            tmp.write_text("", encoding="utf-8")
        write_json(out_dir / "usage.json", {"source": "provided", "file": str(provided), "requests": 0})
    elif source == "api":
        from mmgenrec.enrich.client import generate

        enriched = generate(items, image_dir, cache_path, out_dir / "failures.jsonl", out_dir / "usage.json", **api)
    else:
        raise ValueError(f"enrich.source must be provided or api, not {source!r}")
    split = heldout_split(list(enriched), heldout_fraction, split_seed)
    write_json(out_dir / "enriched.json", enriched)
    write_json(out_dir / "split.json", split)
    log.info("enrichment (%s): %d of %d items; split %d train / %d held out", source, len(enriched), len(items),
             len(split["train"]), len(split["heldout"]))
    return {"items": len(items), "enriched": len(enriched), **{k: len(v) for k, v in split.items()}}
