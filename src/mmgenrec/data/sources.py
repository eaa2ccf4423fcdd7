"""Where a category's data comes from, and the one call per source that turns it into prepared files.

Sources (``categories.<name>.source`` in the config):

``synthetic``  the demo's generator writes raw Amazon-2018 files (``resources/raw/<name>/``)
``download``   the published Amazon-2018 files fetched over HTTP, plus one image per item
               (``resources/amazon18/<name>/``)
``local``      raw Amazon-2018 files already on disk (``raw_dir``: ``meta_<name>.json.gz``, ``<name>_5.json.gz``,
               ``images/``)
``hm``         the H&M Kaggle files in ``raw_dir`` (``articles.csv``, ``customers.csv``, ``transactions_train.csv``,
               ``images/<3 digits>/<article_id>.jpg``)
``synthetic_hm``  the demo's generator writes the H&M files (``resources/raw_hm/<name>/``,
               :mod:`mmgenrec.data.synthetic_hm`), prepared like ``hm``
``prepared``   an already prepared LC-Rec-style folder: downloaded from Google Drive / a URL (``gdrive_id`` / ``url``)
               or read from ``prepared_dir``

Every source ends in the same files under ``results/<name>/prepared/`` (see :mod:`mmgenrec.data.prepare`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmgenrec.io import InputError, atomic_path, iter_json_lines, write_json

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "download", "local", "hm", "synthetic_hm", "prepared")
HM_FILES = {"articles": "articles.csv", "customers": "customers.csv", "transactions": "transactions_train.csv"}


def prepare_source(source: str, inputs: dict, out_dir: str | Path, name: str, *, image_dir: str | Path | None,
                   min_interactions: int = 5, max_history: int = 50, fallback_title: list[str] = ()) -> dict:
    """Prepare one category from ``inputs`` (the rule's named inputs) according to ``source``."""
    out_dir = Path(out_dir)
    if source in ("synthetic", "download", "local"):
        from mmgenrec.data.prepare import prepare_category

        return prepare_category(inputs["meta"], inputs["reviews"], image_dir, out_dir, name,
                                min_interactions=min_interactions, max_history=max_history,
                                fallback_title=fallback_title)
    if source in ("hm", "synthetic_hm"):
        from mmgenrec.data.hm import prepare_hm

        return prepare_hm(inputs["articles"], inputs.get("customers"), inputs["transactions"], image_dir, out_dir,
                          name, min_interactions=min_interactions, max_history=max_history)
    if source == "prepared":
        from mmgenrec.data.archive import import_local_prepared

        stats = import_local_prepared(inputs["folder"], out_dir, name, require=("inter.json",),
                                      max_history=max_history)
        _ensure_user2id(out_dir, name)
        item2id = out_dir / f"{name}.item2id"
        if not item2id.exists():  # the rule's output; the asins are unknown, so the map is empty, not made up
            log.warning("%s: the prepared folder has no item2id; writing an empty one", name)
            with atomic_path(item2id) as tmp:
                tmp.write_text("")
        (out_dir / "images").mkdir(exist_ok=True)  # a folder without images: every item is embedded from text
        return stats
    raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


def _ensure_user2id(out_dir: Path, name: str) -> None:
    """A prepared folder without ``.user2id`` keeps its own user ids: written as an identity map (and logged)."""
    path = out_dir / f"{name}.user2id"
    if path.exists():
        return
    from mmgenrec.io import read_json

    users = sorted(read_json(out_dir / f"{name}.inter.json"), key=int)
    log.warning("%s: the prepared folder has no user2id; writing the identity map of its %d user ids", name,
                len(users))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{u}\t{u}\n" for u in users))


def reviewed_asins(reviews_path: str | Path) -> set[str]:
    """Every asin with a review in the (5-core) review file: the items that need an image."""
    return {rec["asin"] for _, rec in iter_json_lines(reviews_path) if isinstance(rec.get("asin"), str)}


def fetch_category_images(meta_path: str | Path, reviews_path: str | Path, image_dir: str | Path,
                          report_path: str | Path, **options) -> dict:
    """Fetch one image per reviewed item into ``image_dir`` (a cache kept across reruns); write the report last.

    ``image_dir`` is deliberately not a Snakemake output (outputs are deleted before a job reruns): a rerun
    fetches only the images that are missing. ``images_failed.tsv`` lands next to the report.
    """
    from mmgenrec.data.fetch_images import fetch_images

    report_path = Path(report_path)
    asins = reviewed_asins(reviews_path)
    if not asins:
        raise InputError(f"{reviews_path}: no reviews with an asin; nothing to fetch images for")
    report = fetch_images(meta_path, image_dir, asins=asins, report_dir=report_path.parent, **options)
    write_json(report_path, report)
    return report
