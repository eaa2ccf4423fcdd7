"""The LC-Rec prepared-folder format (the original study's data) and its validation.

A prepared folder holds, for a dataset ``<name>``::

    <name>.inter.json             {"<user id>": [item ids, oldest first]}          (always required)
    <name>.item.json              {"<item id>": {title, description, brand, categories, ...}}
    <name>.item2id / .user2id     "<asin or user>\\t<id>" per line
    <name>.item_enriched_v2.json  {"<item id>": {...enriched fields...}}           (optional)
    <name>.{train,valid,test}.inter   RecBole splits                                 (optional)
    images/                       item images                                        (optional)

:func:`validate_prepared` checks such a folder and raises :class:`~mmgenrec.io.InputError` naming the file, the
user / item / line and the field of the first violation. Fetching and importing such folders:
:mod:`mmgenrec.data.archive`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmgenrec.io import InputError, read_json

log = logging.getLogger(__name__)

RECBOLE_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"
SPLITS = ("train.inter", "valid.inter", "test.inter")
DEFAULT_OPTIONAL = ("user2id", "item_enriched_v2.json", "images") + SPLITS
ITEM_FIELDS = ("title", "description", "brand", "categories")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


# --------------------------------------------------------------------------------------------- validation


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_key(path: Path, key, what: str) -> int:
    if not isinstance(key, str) or not key.isascii() or not key.isdigit():
        raise InputError(f"{path}: {what} key {key!r} is not a non-negative integer id")
    return int(key)


def _check_contiguous(path: Path, ids: set[int], what: str) -> None:
    if ids != set(range(len(ids))):
        gap = next(i for i in range(len(ids) + 1) if i not in ids)
        raise InputError(f"{path}: {what} ids must be 0..{len(ids) - 1} without gaps; "
                         f"{what} {gap} is missing (largest id {max(ids)})")


def read_id_map(path: Path, kind: str) -> dict[str, int]:
    """``key\\tid`` lines -> {key: id}; malformed lines, repeated keys and repeated ids are errors."""
    out: dict[str, int] = {}
    seen: dict[int, int] = {}
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0] or not parts[1].isdigit():
                raise InputError(f"{path}: line {lineno}: expected '<{kind}>\\t<id>', got {line[:80]!r}")
            key, iid = parts[0], int(parts[1])
            if key in out:
                raise InputError(f"{path}: line {lineno}: {kind} {key!r} repeated (first on line {first_line[key]})")
            if iid in seen:
                raise InputError(f"{path}: line {lineno}: id {iid} repeated (first on line {seen[iid]})")
            out[key], seen[iid], first_line[key] = iid, lineno, lineno
    return out


def _check_same_ids(path: Path, kind: str, ids: set[int], expected: set[int]) -> None:
    """An id map must cover exactly the ids of inter.json; the error names the first id that differs."""
    if ids == expected:
        return
    missing, extra = sorted(expected - ids), sorted(ids - expected)
    if missing:
        raise InputError(f"{path}: {kind} {missing[0]} (in inter.json) has no line ({len(missing)} missing)")
    raise InputError(f"{path}: {kind} {extra[0]} is not in inter.json ({len(extra)} such id(s))")


def plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def check_split(path: Path, split: str, inter: dict[str, list[int]], n_items: int) -> int:
    """Header, three fields per row, known users and items; valid/test rows must be the leave-one-out rows."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or lines[0] != RECBOLE_HEADER:
        raise InputError(f"{path}: line 1: expected the RecBole header {RECBOLE_HEADER!r}, "
                         f"got {(lines[0] if lines else '')[:80]!r}")
    users = set()
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 3:
            raise InputError(f"{path}: line {lineno}: expected 3 tab-separated fields, got {len(parts)}")
        user, hist, target = parts
        if user not in inter:
            raise InputError(f"{path}: line {lineno}: user {user!r} is not in inter.json")
        try:
            history = [int(x) for x in hist.split()]
            target_id = int(target)
        except ValueError:
            raise InputError(f"{path}: line {lineno}: item ids must be integers ({line[:80]!r})") from None
        bad = [i for i in history + [target_id] if not 0 <= i < n_items]
        if bad:
            raise InputError(f"{path}: line {lineno}: item {bad[0]} is not a known item id")
        if split != "train.inter":
            seq = inter[user]
            k = -1 if split == "test.inter" else -2
            if user in users:
                raise InputError(f"{path}: line {lineno}: user {user} has a second row")
            users.add(user)
            if target_id != seq[k] or not history or history != seq[:k][-len(history):]:
                raise InputError(f"{path}: line {lineno}: user {user}: row is not the leave-one-out "
                                 f"{split.split('.')[0]} row of inter.json (target {target_id}, expected {seq[k]})")
    if split != "train.inter" and len(users) != len(inter):
        missing = next(u for u in inter if u not in users)
        raise InputError(f"{path}: user {missing} of inter.json has no row")
    return len(lines) - 1


def validate_prepared(
    folder: str | Path,
    name: str,
    *,
    require: tuple[str, ...] = ("inter.json", "item.json", "item2id"),
    optional: tuple[str, ...] = DEFAULT_OPTIONAL,
    allow_empty_titles: bool = False,
) -> dict:
    """Check a prepared folder; return a report (counts, which optional parts are present).

    ``require``: parts (file suffixes after ``<name>.``, or ``"images"``) that must be present; ``inter.json`` is
    always required. ``optional``: parts checked and reported when present. Parts in neither are ignored.
    ``allow_empty_titles``: real LC-Rec files contain a few items with an empty title (Office: 3 of 2,420);
    by default that is an error, with ``True`` those items are listed in the report (``items_empty_title``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    part = lambda p: folder / ("images" if p == "images" else f"{name}.{p}")  # noqa: E731
    require = tuple(dict.fromkeys(("inter.json",) + tuple(require)))
    for p in require:
        if not part(p).exists():
            found = ", ".join(sorted(x.name for x in folder.iterdir())) or "nothing"
            raise InputError(f"{part(p)}: required file is missing (the folder holds: {found})")
    present = {p: part(p).exists() for p in dict.fromkeys(require + tuple(optional))}
    check = lambda p: present.get(p, False)  # noqa: E731

    # inter.json: {user: [item ids]} with at least 3 items per user
    ipath = part("inter.json")
    inter = read_json(ipath)
    if not isinstance(inter, dict) or not inter:
        raise InputError(f"{ipath}: expected a non-empty JSON object {{user id: [item ids]}}")
    item_ids: set[int] = set()
    repeated_users = 0
    first_user: dict[int, str] = {}
    for user, seq in inter.items():
        _int_key(ipath, user, "user")
        if not isinstance(seq, list) or not all(_is_int(i) and i >= 0 for i in seq):
            raise InputError(f"{ipath}: user {user}: expected a list of non-negative integer item ids")
        if len(seq) < 3:
            raise InputError(f"{ipath}: user {user}: {len(seq)} item(s); leave-one-out needs at least 3")
        repeated_users += len(set(seq)) != len(seq)
        for i in seq:
            first_user.setdefault(i, user)
        item_ids.update(seq)
    _check_contiguous(ipath, item_ids, "item")
    n_items = len(item_ids)
    lengths = [len(s) for s in inter.values()]
    user_ids = {int(u) for u in inter}
    report: dict = {
        "folder": str(folder), "name": name,
        "n_users": len(inter), "n_items": n_items, "n_interactions": sum(lengths),
        "seq_len": {"min": min(lengths), "max": max(lengths)},
        "user_ids_contiguous": user_ids == set(range(len(user_ids))),
        "users_with_repeated_items": repeated_users,
        "present": present,
    }
    if repeated_users:
        log.warning("%s: %d users hold an item more than once", ipath, repeated_users)

    # item.json: the same ids (string keys), every value a record with a title
    items = None
    if check("item.json"):
        jpath = part("item.json")
        items = read_json(jpath)
        if not isinstance(items, dict):
            raise InputError(f"{jpath}: expected a JSON object {{item id: {{title, ...}}}}")
        keys = {_int_key(jpath, k, "item") for k in items}
        missing = sorted(item_ids - keys)
        if missing:
            i = missing[0]
            raise InputError(f"{jpath}: item {i} (in inter.json, user {first_user[i]}) is missing "
                             f"({len(missing)} item(s) missing)")
        extra = sorted(keys - item_ids)
        if extra:
            raise InputError(f"{jpath}: item {extra[0]} is not in inter.json ({len(extra)} such item(s))")
        if len(keys) != len(items):
            raise InputError(f"{jpath}: an item id appears under two spellings (e.g. '01' and '1')")
        empty = []
        for key, rec in items.items():
            if not isinstance(rec, dict):
                raise InputError(f"{jpath}: item {key}: expected an object, got {type(rec).__name__}")
            title = rec.get("title")
            if title is not None and not isinstance(title, str):
                raise InputError(f"{jpath}: item {key}: field 'title' is not a string")
            if not (title or "").strip():
                if not allow_empty_titles:
                    raise InputError(f"{jpath}: item {key}: field 'title' is missing or empty")
                empty.append(int(key))
            if rec.get("image") is not None and not plain_name(rec["image"]):
                raise InputError(f"{jpath}: item {key}: field 'image' must be a plain file name, "
                                 f"got {rec['image']!r}")
        report["items_empty_title"] = sorted(empty)
        if empty:
            log.warning("%s: %d item(s) with an empty title: %s", jpath, len(empty), sorted(empty)[:10])

    # item2id: asin\tid, the same id set, unique asins, consistent with item.json's asin when it has one
    if check("item2id"):
        mpath = part("item2id")
        item2id = read_id_map(mpath, "asin")
        _check_same_ids(mpath, "item", set(item2id.values()), item_ids)
        if items is not None:
            for asin, iid in item2id.items():
                other = items[str(iid)].get("asin")
                if other is not None and other != asin:
                    raise InputError(f"{mpath}: item {iid}: asin {asin!r} differs from field 'asin' "
                                     f"{other!r} in {part('item.json').name}")
        report["item2id_lines"] = len(item2id)

    if check("user2id"):
        upath = part("user2id")
        user2id = read_id_map(upath, "user")
        _check_same_ids(upath, "user", set(user2id.values()), user_ids)
        report["user2id_lines"] = len(user2id)

    if check("item_enriched_v2.json"):
        epath = part("item_enriched_v2.json")
        enriched = read_json(epath)
        if not isinstance(enriched, dict):
            raise InputError(f"{epath}: expected a JSON object {{item id: {{...}}}}")
        for key, rec in enriched.items():
            if _int_key(epath, key, "item") not in item_ids:
                raise InputError(f"{epath}: item {key} is not in inter.json")
            if not isinstance(rec, dict):
                raise InputError(f"{epath}: item {key}: expected an object, got {type(rec).__name__}")
        report["enriched_items"] = len(enriched)

    if check("images"):
        ipath_ = part("images")
        if not ipath_.is_dir():
            raise InputError(f"{ipath_}: expected a folder of images")
        report["image_files"] = sum(1 for p in ipath_.iterdir() if p.is_file() and not p.name.startswith("."))
        if items is not None:
            named = [rec.get("image") for rec in items.values() if rec.get("image")]
            report["items_image_file_missing"] = sum(not (ipath_ / n).is_file() for n in named)

    report["split_rows"] = {}
    for split in SPLITS:
        if check(split):
            report["split_rows"][split.split(".")[0]] = check_split(part(split), split, inter, n_items)

    known = {part(p).name for p in present}
    report["other_files"] = sorted(p.name for p in folder.iterdir() if p.name not in known)
    return report
