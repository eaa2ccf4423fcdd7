"""H&M Personalized Fashion Recommendations (Kaggle CSVs) -> the same prepared files as the Amazon preparation.

Inputs: ``articles.csv`` (one row per article), ``customers.csv`` (one row per customer; only ``customer_id`` is
read, to count transactions of unlisted customers), ``transactions_train.csv`` (``t_dat, customer_id, article_id,
price, sales_channel_id``) and the image tree ``<image_root>/<first 3 digits>/<article_id>.jpg``.

Outputs in ``out_dir``: exactly the files and formats of :func:`mmgenrec.data.prepare.prepare_category`
(``<name>.inter.json``, ``.item.json``, ``.item2id``, ``.user2id``, ``.train/.valid/.test.inter``, ``.stats.json``),
plus ``out_dir/images/``: the images of the kept items, hard-linked (or copied where a link is not possible)
under :func:`~mmgenrec.data.images.image_filename` of the article id -- the folder the ``embed`` stage reads.

Item text (one record per article, keys in the Amazon order ``title, description, brand, categories, asin, image``):

* ``title`` = ``prod_name (colour_group_name)``. H&M gives every colour variant of a product its own article id
  but the same ``prod_name``; the colour is what tells the variants apart, so it is part of the title (left out
  when empty or already contained in the name). An article whose ``prod_name`` is empty is dropped (counted).
* ``description`` = ``detail_desc`` (empty when missing).
* ``brand`` = ``"H&M"`` for every article: H&M sells only its own products, and the department hierarchy is
  what describes the article, so it goes into the categories rather than being passed off as a brand.
* ``categories`` = ``"product_group_name, product_type_name, section_name, garment_group_name"`` (LC-Rec style;
  empty parts and repeats removed, order kept).
* ``asin`` = the article id, read as a string everywhere: it is 10 characters with a leading zero.
* ``image`` = the file name in ``out_dir/images`` when the source image exists and decodes, else ``null``.

Interactions (each rule counted in ``stats.json``): transactions of articles missing from ``articles.csv`` are
dropped; a customer's repeated purchases of one article keep the first (``dedupe="first"``; ``"last"`` keeps the
most recent) because LC-Rec sequences hold each item once; then the iterative k-core, ordering per customer by
``t_dat`` with ties in file order, ids by first appearance, and leave-one-out -- all as in the Amazon preparation.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mmgenrec.data.images import image_filename, is_readable_image, link_or_copy
from mmgenrec.data.prepare import chronological_ids, clean_categories, clean_text, k_core, write_prepared
from mmgenrec.io import InputError, atomic_dir

log = logging.getLogger(__name__)

BRAND = "H&M"
ARTICLE_COLUMNS = ("article_id", "prod_name", "colour_group_name", "detail_desc",
                   "product_group_name", "product_type_name", "section_name", "garment_group_name")
CATEGORY_COLUMNS = ("product_group_name", "product_type_name", "section_name", "garment_group_name")
TRANSACTION_COLUMNS = ("t_dat", "customer_id", "article_id")
CUSTOMER_COLUMNS = ("customer_id",)
# Every count is reported, zero or not.
COUNT_KEYS = ("article_rows", "article_duplicate_id", "items_dropped_empty_title", "customer_rows",
              "transaction_rows", "transactions_dropped_unknown_article", "transactions_unknown_customer",
              "transactions_dropped_repeat", "transactions_unique_known", "k_core_rounds",
              "items_with_image", "items_without_image")
_CHUNK = 1_000_000


def _open_csv(path: str | Path, required: tuple[str, ...], chunksize: int | None = None):
    """Read only ``required`` columns, all as strings (ids keep their leading zeros; empty cells are "")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file; expected a CSV header with columns {', '.join(required)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV file ({e})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: required column(s) {', '.join(repr(c) for c in missing)} missing "
                         f"(header has: {', '.join(header)})")
    try:
        return pd.read_csv(path, usecols=list(required), dtype=str, keep_default_na=False, chunksize=chunksize)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV file ({e})") from None


def _chunks(reader, path: Path):
    try:
        yield from reader
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV file ({e})") from None


def _require_values(df: pd.DataFrame, columns, path: Path, first_row: int) -> None:
    """Ids must not be empty; the error names the data row (1 = first row after the header)."""
    for col in columns:
        empty = np.flatnonzero((df[col].str.strip() == "").to_numpy())
        if len(empty):
            raise InputError(f"{path}: row {first_row + int(empty[0])}: column '{col}' is empty")


def item_title(prod_name, colour) -> str:
    """``"prod_name (colour)"``; just the name when the colour is empty or already part of it; "" without name."""
    name, colour = clean_text(prod_name), clean_text(colour)
    if not name:
        return ""
    if colour and colour.lower() not in name.lower():
        return f"{name} ({colour})"
    return name


def read_articles(path: str | Path, stats: Counter) -> dict[str, dict]:
    """article_id -> item record (without ``image``), in file order. A repeated id keeps its first titled row."""
    path = Path(path)
    df = _open_csv(path, ARTICLE_COLUMNS)
    _require_values(df, ("article_id",), path, 1)
    items: dict[str, dict | None] = {}
    for row in tqdm(df.itertuples(index=False), total=len(df), desc="articles", unit=" rows"):
        stats["article_rows"] += 1
        aid = row.article_id.strip()
        if aid in items:
            stats["article_duplicate_id"] += 1
            if items[aid] is not None:
                continue
        title = item_title(row.prod_name, row.colour_group_name)
        if not title:
            items.setdefault(aid, None)
            continue
        items[aid] = {
            "title": title,
            "description": clean_text(row.detail_desc),
            "brand": BRAND,
            "categories": clean_categories([getattr(row, c) for c in CATEGORY_COLUMNS]),
            "asin": aid,
        }
    stats["items_dropped_empty_title"] = sum(r is None for r in items.values())
    return {a: r for a, r in items.items() if r is not None}


def read_customers(path: str | Path, stats: Counter) -> set[str]:
    path = Path(path)
    df = _open_csv(path, CUSTOMER_COLUMNS)
    _require_values(df, CUSTOMER_COLUMNS, path, 1)
    stats["customer_rows"] = len(df)
    return set(df["customer_id"].str.strip())


def read_transactions(path: str | Path, known: dict, customers: set[str] | None, stats: Counter,
                      dedupe: str = "first") -> list[tuple[str, str, int, int]]:
    """(customer, article, day, row) per kept purchase; ``day`` counts days since 1970-01-01, ``row`` is the
    data row in the file (ties on a day keep file order). Unknown articles are dropped; a repeated
    (customer, article) keeps its first purchase (``dedupe="first"``) or its last (``"last"``)."""
    path = Path(path)
    parts = []
    start = 1
    reader = _open_csv(path, TRANSACTION_COLUMNS, chunksize=_CHUNK)
    for chunk in tqdm(_chunks(reader, path), desc="transactions", unit=" chunks"):
        n = len(chunk)
        _require_values(chunk, ("customer_id", "article_id"), path, start)
        dates = pd.to_datetime(chunk["t_dat"].str.strip(), format="ISO8601", errors="coerce")
        bad = np.flatnonzero(dates.isna().to_numpy())
        if len(bad):
            value = chunk["t_dat"].iloc[int(bad[0])]
            raise InputError(f"{path}: row {start + int(bad[0])}: column 't_dat' is not a date ({value!r})")
        frame = pd.DataFrame({
            "customer": chunk["customer_id"].str.strip().to_numpy(),
            "article": chunk["article_id"].str.strip().to_numpy(),
            "day": dates.to_numpy().astype("datetime64[D]").astype(np.int64),
            "row": np.arange(start, start + n, dtype=np.int64),
        })
        stats["transaction_rows"] += n
        if customers is not None:
            stats["transactions_unknown_customer"] += int((~frame["customer"].isin(customers)).sum())
        keep = frame["article"].isin(set(known))
        stats["transactions_dropped_unknown_article"] += int((~keep).sum())
        parts.append(frame[keep.to_numpy()])
        start += n
    if not parts:
        return []
    df = pd.concat(parts, ignore_index=True).sort_values(["day", "row"], kind="stable")
    kept = df.drop_duplicates(["customer", "article"], keep=dedupe)
    stats["transactions_dropped_repeat"] = len(df) - len(kept)
    kept = kept.sort_values("row", kind="stable")
    return list(zip(kept["customer"].tolist(), kept["article"].tolist(), kept["day"].tolist(), kept["row"].tolist()))


def _source_image(image_root: Path, aid: str) -> Path | None:
    """``<image_root>/<first 3 characters>/<article_id>.jpg``, only for ids that are plain safe file names."""
    if len(aid) < 3 or image_filename(aid) != f"{aid}.jpg":
        return None
    return image_root / aid[:3] / f"{aid}.jpg"


def prepare_hm(
    articles_csv: str | Path,
    customers_csv: str | Path | None,
    transactions_csv: str | Path,
    image_root: str | Path | None,
    out_dir: str | Path,
    name: str = "HM",
    *,
    min_interactions: int = 5,
    max_history: int = 50,
    dedupe: str = "first",
) -> dict:
    """Run the whole H&M preparation; return the stats written to ``<name>.stats.json``."""
    if min_interactions < 3:
        raise ValueError(f"min_interactions={min_interactions}: leave-one-out needs at least 3 items per user")
    if dedupe not in ("first", "last"):
        raise ValueError(f"dedupe={dedupe!r}: expected 'first' or 'last'")
    stats: Counter = Counter({key: 0 for key in COUNT_KEYS})
    articles = read_articles(articles_csv, stats)
    customers = read_customers(customers_csv, stats) if customers_csv is not None else None
    purchases = read_transactions(transactions_csv, articles, customers, stats, dedupe)
    stats["transactions_unique_known"] = len(purchases)
    purchases = k_core(purchases, min_interactions, stats)
    if not purchases:
        raise InputError(f"{transactions_csv}: no interactions left after the {min_interactions}-core filter "
                         f"({stats['transaction_rows']} transactions, {len(articles)} articles with a title)")

    user2id, item2id, inter = chronological_ids(purchases)  # same ordering and numbering as Amazon

    out_dir = Path(out_dir)
    image_root = Path(image_root) if image_root is not None else None
    item_json = {}
    with atomic_dir(out_dir / "images") as img_tmp:
        for aid, iid in tqdm(item2id.items(), desc="images", unit=" items"):
            src = _source_image(image_root, aid) if image_root is not None else None
            has = src is not None and is_readable_image(src)
            if has:
                link_or_copy(src, img_tmp / image_filename(aid))
            stats["items_with_image" if has else "items_without_image"] += 1
            item_json[str(iid)] = {**articles[aid], "image": image_filename(aid) if has else None}

    result = write_prepared(
        out_dir, name, inter, item_json, item2id, user2id, stats, min_interactions=min_interactions,
        max_history=max_history, dedupe=dedupe,
        sources={"articles": str(articles_csv), "customers": None if customers_csv is None else str(customers_csv),
                 "transactions": str(transactions_csv), "images": None if image_root is None else str(image_root)},
    )
    log.info("%s: %d users, %d items, %d interactions (%s)", name, result["n_users"], result["n_items"],
             result["n_interactions"], dict(stats))
    return result
