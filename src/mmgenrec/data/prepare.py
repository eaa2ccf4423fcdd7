"""Raw Amazon-2018 files -> iterative k-core -> chronological leave-one-out -> LC-Rec-style files.

Outputs in ``out_dir`` (``<name>`` = the category)::

    <name>.inter.json    {"<user id>": [item ids, oldest first]}   (the last item is test, the second last valid)
    <name>.item.json     {"<item id>": {title, description, brand, categories, asin, image}}   (image: file name or null)
    <name>.item2id       "<asin>\\t<item id>" per line;  <name>.user2id likewise for reviewerID
    <name>.{train,valid,test}.inter   RecBole sequential format (user, history, target), as LC-Rec ships
    <name>.stats.json    what was read, dropped and kept, and why
    <name>.stats.failed.json   the same counts when nothing survives the filters (not an output: written on failure
                         so that the cause can be read; removed by the next successful run)
    images/              the kept items' images (hard links to the raw images where possible)

Rules (each counted in the stats): metadata lines with a repeated asin keep the first
line that has a usable title; titles are cleaned of HTML (some real files hold a scraped fragment such as
``<span class="a-size-medium a-color-secondary"`` as the title, empty once cleaned); an item whose title ends up
empty takes the first non-empty field of ``fallback_title`` (e.g. ``[description, brand]``; cut to
``FALLBACK_TITLE_CHARS`` at a word boundary; counted as ``items_fallback_title``), or is dropped. Reviews of items
whose title was empty (``reviews_dropped_empty_title``) and of items without any metadata line ("orphans",
``reviews_dropped_orphan``) are dropped and counted apart; a repeated (user, item) pair keeps its earliest
review; then users and items with fewer than ``min_interactions`` are removed repeatedly until none is left (iterative k-core). Each user's items are ordered by review time, ties
by their order in the file. Ids are given by first appearance: users in order of their first review, items as
they first appear walking those users' sequences.
"""

from __future__ import annotations

import html
import logging
import re
from collections import Counter, defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from mmgenrec.data.images import image_filename, is_readable_image, link_or_copy
from mmgenrec.io import InputError, atomic_dir, atomic_path, iter_json_lines, write_json

log = logging.getLogger(__name__)

# Every count is reported, zero or not, so that downstream readers can rely on the keys.
COUNT_KEYS = ("meta_lines", "meta_duplicate_asin", "meta_lines_empty_title", "items_dropped_empty_title",
              "items_fallback_title", "review_lines", "reviewed_items", "reviewed_items_empty_title",
              "reviewed_items_orphan", "reviews_dropped_empty_title", "reviews_dropped_orphan",
              "reviews_dropped_repeat", "reviews_unique_known", "k_core_users_in", "k_core_items_in",
              "k_core_rounds", "items_with_image", "items_without_image")
FALLBACK_FIELDS = ("description", "brand", "categories")
FALLBACK_TITLE_CHARS = 120
_TAG = re.compile(r"<[^>]*>?")
_SPACE = re.compile(r"\s+")


def clean_text(value) -> str:
    """Plain text from a metadata field: lists joined, HTML tags and entities removed, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (clean_text(v) for v in value) if t)
    if not isinstance(value, str):
        value = str(value)
    text = _TAG.sub(" ", html.unescape(value))
    return _SPACE.sub(" ", text).strip()


def clean_categories(value) -> str:
    """The category path as LC-Rec writes it: "A, B, C" (repeats removed, order kept)."""
    if isinstance(value, str):
        value = [value]
    out: list[str] = []
    for c in value or []:
        c = clean_text(c)
        if c and c not in out:
            out.append(c)
    return ", ".join(out)


def _cut(text: str, limit: int = FALLBACK_TITLE_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else text[:limit]).rstrip(" ,.;:") + "..."


def read_meta(path: str | Path, stats: Counter, *, fallback_title: tuple[str, ...] = (),
              untitled: dict[str, str] | None = None) -> dict[str, dict]:
    """asin -> cleaned item record, in file order; both metadata schemas (``image`` or ``imageURL*``).

    An item whose title is empty after cleaning takes the first non-empty ``fallback_title`` field, else is left
    out; ``untitled`` (when given) receives the left-out asins with their raw title, for the caller's counts."""
    bad = [f for f in fallback_title if f not in FALLBACK_FIELDS]
    if bad:
        raise ValueError(f"prepare.fallback_title: unknown field(s) {bad}; expected some of {FALLBACK_FIELDS}")
    items: dict[str, dict] = {}
    fallback: dict[str, dict] = {}
    raw_titles: dict[str, str] = {}
    for lineno, rec in tqdm(iter_json_lines(path), desc="metadata", unit=" lines"):
        stats["meta_lines"] += 1
        asin = rec.get("asin")
        if not isinstance(asin, str) or not asin.strip():
            raise InputError(f"{path}: line {lineno}: field 'asin' is missing or not a string")
        seen = asin in items
        if seen:
            stats["meta_duplicate_asin"] += 1
            if items[asin] is not None:
                continue
        record = {
            "title": clean_text(rec.get("title")),
            "description": clean_text(rec.get("description")),
            "brand": clean_text(rec.get("brand")),
            "categories": clean_categories(rec.get("category")),
            "asin": asin,
        }
        if not record["title"]:
            stats["meta_lines_empty_title"] += 1
            items.setdefault(asin, None)
            raw_titles.setdefault(asin, str(rec.get("title", ""))[:80])
            alt = next((record[f] for f in fallback_title if record[f]), "")
            if alt and asin not in fallback:
                fallback[asin] = {**record, "title": _cut(alt)}
            continue
        items[asin] = record
    if stats["meta_lines"] == 0:
        raise InputError(f"{path}: the metadata file holds no records (an empty file or an empty gzip stream); "
                         f"replace it with the category's complete meta_<category>.json.gz")
    for asin, record in fallback.items():
        if items[asin] is None:
            items[asin] = record
            stats["items_fallback_title"] += 1
    stats["items_dropped_empty_title"] = sum(r is None for r in items.values())
    if untitled is not None:
        untitled.update({a: raw_titles.get(a, "") for a, r in items.items() if r is None})
    return {a: r for a, r in items.items() if r is not None}


def read_reviews(path: str | Path, known: dict, stats: Counter,
                 untitled: dict[str, str] | None = None) -> list[tuple[str, str, int, int]]:
    """(user, asin, time, line) per review of a known item; a repeated (user, item) keeps the earliest. Reviews of
    ``untitled`` items (metadata without a usable title) are counted apart from orphans (no metadata at all)."""
    untitled = untitled or {}
    first: dict[tuple[str, str], tuple[int, int]] = {}
    reviewed: set[str] = set()
    for lineno, rec in tqdm(iter_json_lines(path), desc="reviews", unit=" lines"):
        stats["review_lines"] += 1
        for field in ("reviewerID", "asin"):
            if not isinstance(rec.get(field), str):
                raise InputError(f"{path}: line {lineno}: field '{field}' is missing or not a string")
        t = rec.get("unixReviewTime")
        if isinstance(t, bool) or not isinstance(t, (int, float)) and not (isinstance(t, str) and t.isdigit()):
            raise InputError(f"{path}: line {lineno}: field 'unixReviewTime' is missing or not a number ({t!r})")
        reviewed.add(rec["asin"])
        if rec["asin"] not in known:
            stats["reviews_dropped_empty_title" if rec["asin"] in untitled else "reviews_dropped_orphan"] += 1
            continue
        key = (rec["reviewerID"], rec["asin"])
        value = (int(t), lineno)
        if key in first:
            stats["reviews_dropped_repeat"] += 1
            if value < first[key]:
                first[key] = value
            continue
        first[key] = value
    if stats["review_lines"] == 0:
        raise InputError(f"{path}: the review file holds no records (an empty file or an empty gzip stream)")
    stats["reviewed_items"] = len(reviewed)
    stats["reviewed_items_empty_title"] = sum(a in untitled for a in reviewed)
    stats["reviewed_items_orphan"] = sum(a not in known and a not in untitled for a in reviewed)
    return [(u, a, t, line) for (u, a), (t, line) in first.items()]


def k_core(reviews: list[tuple[str, str, int, int]], k: int, stats: Counter) -> list[tuple[str, str, int, int]]:
    """Remove users and items with fewer than ``k`` reviews, repeatedly, until every one left has ``k``."""
    rounds = 0
    while True:
        users = Counter(r[0] for r in reviews)
        items = Counter(r[1] for r in reviews)
        kept = [r for r in reviews if users[r[0]] >= k and items[r[1]] >= k]
        rounds += 1
        if len(kept) == len(reviews):
            break
        reviews = kept
    stats["k_core_rounds"] = rounds
    return reviews


def _nothing_left_message(reviews_path, stats: Counter, untitled: dict, k: int, failed: Path, fallback_title) -> str:
    c = stats
    parts = [f"{reviews_path}: no interactions left after the {k}-core filter. {c['review_lines']} review lines "
             f"cover {c['reviewed_items']} items: {c['reviewed_items_empty_title']} of them have metadata whose "
             f"title is empty once HTML is removed ({c['reviews_dropped_empty_title']} reviews dropped"]
    example = next(((a, t) for a, t in untitled.items() if t), None)
    if c["reviewed_items_empty_title"] and example:
        parts.append(f"; e.g. asin {example[0]}, title {example[1]!r}")
    parts.append(f"), {c['reviewed_items_orphan']} have no metadata line ({c['reviews_dropped_orphan']} reviews "
                 f"dropped); {c['reviews_dropped_repeat']} repeated (user, item) reviews dropped; "
                 f"{c['reviews_unique_known']} reviews of {c['k_core_items_in']} items by {c['k_core_users_in']} "
                 f"users went into the {k}-core filter, which kept none.")
    if c["reviewed_items_empty_title"] and not fallback_title:
        parts.append(" Set prepare.fallback_title (e.g. [description, brand]) to title those items from other "
                     "fields, or lower prepare.min_interactions.")
    elif c["reviewed_items_empty_title"]:
        parts.append(f" prepare.fallback_title {list(fallback_title)} titled {c['items_fallback_title']} items; "
                     f"the rest have none of those fields.")
    parts.append(f" Counts: {failed}")
    return "".join(parts)


def chronological_ids(events: list[tuple[str, str, int, int]]):
    """``(user, item, time, line)`` events -> ``(user2id, item2id, inter)``.

    Each user's items in time order, ties by their line in the source file; users numbered in order of their first
    event, items as they first appear walking those users' sequences.
    """
    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for user, item, t, line in events:
        by_user[user].append((t, line, item))
    users = sorted(by_user, key=lambda u: min(by_user[u])[:2])
    user2id = {u: i for i, u in enumerate(users)}
    item2id: dict[str, int] = {}
    inter: dict[str, list[int]] = {}
    for u in users:
        seq = [item for _, _, item in sorted(by_user[u])]
        for item in seq:
            item2id.setdefault(item, len(item2id))
        inter[str(user2id[u])] = [item2id[i] for i in seq]
    return user2id, item2id, inter


def prepare_category(
    meta_path: str | Path,
    reviews_path: str | Path,
    image_dir: str | Path,
    out_dir: str | Path,
    name: str,
    *,
    min_interactions: int = 5,
    max_history: int = 50,
    fallback_title: list[str] | tuple[str, ...] = (),
) -> dict:
    """Run the whole preparation for one category; return the stats written to ``<name>.stats.json``.

    When nothing survives the filters, the counts go to ``<name>.stats.failed.json`` (and the log) and the error
    says which filter removed what."""
    if min_interactions < 3:
        raise ValueError(f"min_interactions={min_interactions}: leave-one-out needs at least 3 items per user")
    stats: Counter = Counter({key: 0 for key in COUNT_KEYS})
    out_dir = Path(out_dir)
    failed = out_dir / f"{name}.stats.failed.json"
    untitled: dict[str, str] = {}
    meta = read_meta(meta_path, stats, fallback_title=tuple(fallback_title), untitled=untitled)
    reviews = read_reviews(reviews_path, meta, stats, untitled)
    stats["reviews_unique_known"] = len(reviews)
    stats["k_core_users_in"] = len({r[0] for r in reviews})
    stats["k_core_items_in"] = len({r[1] for r in reviews})
    reviews = k_core(reviews, min_interactions, stats)
    if not reviews:
        message = _nothing_left_message(reviews_path, stats, untitled, min_interactions, failed, fallback_title)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(failed, {"category": name, "error": message, "min_interactions": min_interactions,
                            "counts": dict(sorted(stats.items())),
                            "sources": {"meta": str(meta_path), "reviews": str(reviews_path)}})
        log.error("%s", message)
        raise InputError(message)
    failed.unlink(missing_ok=True)

    user2id, item2id, inter = chronological_ids(reviews)

    image_dir = Path(image_dir)
    item_json = {}
    with atomic_dir(out_dir / "images") as images_out:  # the category's images, next to its item.json
        for asin, iid in tqdm(item2id.items(), desc="images", unit=" items"):
            fname = image_filename(asin)
            has = is_readable_image(image_dir / fname)
            if has:
                link_or_copy(image_dir / fname, images_out / fname)
            stats["items_with_image" if has else "items_without_image"] += 1
            item_json[str(iid)] = {**meta[asin], "image": fname if has else None}

    result = write_prepared(out_dir, name, inter, item_json, item2id, user2id, stats,
                            min_interactions=min_interactions, max_history=max_history,
                            sources={"meta": str(meta_path), "reviews": str(reviews_path), "images": str(image_dir)})
    log.info("%s: %d users, %d items, %d interactions (%s)", name, result["n_users"], result["n_items"],
             result["n_interactions"], dict(stats))
    return result


def write_prepared(out_dir: Path, name: str, inter: dict, item_json: dict, item2id: dict, user2id: dict,
                   stats: Counter, *, min_interactions: int, max_history: int, sources: dict, **extra) -> dict:
    """Write every prepared file of a category (LC-Rec files, RecBole splits, ``stats.json``); return the stats.

    Shared by every source (Amazon, H&M) so that the files downstream rules read are the same by construction.
    """
    out = lambda suffix: out_dir / f"{name}.{suffix}"  # noqa: E731
    write_json(out("inter.json"), inter, indent=None)
    write_json(out("item.json"), item_json)
    _write_lines(out("item2id"), (f"{a}\t{i}" for a, i in item2id.items()))
    _write_lines(out("user2id"), (f"{u}\t{i}" for u, i in user2id.items()))
    _write_recbole(out_dir, name, inter, max_history)
    lengths = sorted(len(s) for s in inter.values())
    result = {
        "category": name, "min_interactions": min_interactions,
        "n_users": len(inter), "n_items": len(item2id), "n_interactions": sum(lengths),
        "density": sum(lengths) / (len(inter) * len(item2id)),
        "seq_len": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1],
                    "mean": round(sum(lengths) / len(lengths), 3)},
        "counts": dict(sorted(stats.items())),
        "sources": sources,
        **extra,
    }
    write_json(out("stats.json"), result)
    return result


def _write_lines(path: Path, lines) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def _write_recbole(out_dir: Path, name: str, inter: dict[str, list[int]], max_history: int) -> None:
    """train: every prefix of the training part; valid: train part -> second last; test: all but last -> last."""
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    rows: dict[str, list[str]] = {"train": [header], "valid": [header], "test": [header]}
    for user, seq in inter.items():
        train = seq[:-2]
        for t in range(1, len(train)):
            rows["train"].append(_row(user, train[:t][-max_history:], train[t]))
        rows["valid"].append(_row(user, train[-max_history:], seq[-2]))
        rows["test"].append(_row(user, seq[:-1][-max_history:], seq[-1]))
    for split, lines in rows.items():
        _write_lines(out_dir / f"{name}.{split}.inter", lines)


def _row(user: str, history: list[int], target: int) -> str:
    return f"{user}\t{' '.join(map(str, history))}\t{target}"
