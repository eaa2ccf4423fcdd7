"""The original study's prepared data (LC-Rec-format folders, :mod:`mmgenrec.data.prepared_format`): fetch and
import into our layout.

:func:`fetch_prepared_archive` downloads a zip or tar archive (Google Drive id or plain URL, through ``gdown``),
unpacks it safely, validates it (:func:`~mmgenrec.data.prepared_format.validate_prepared`) and only then moves it
into place. :func:`import_local_prepared` turns a validated folder into exactly the files our ``prepare`` stage
writes, so that every downstream rule runs on the study's own data.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from mmgenrec.data.download import sha256_file
from mmgenrec.data.images import image_filename, is_readable_image, link_or_copy
from mmgenrec.data.prepare import _write_lines, _write_recbole
from mmgenrec.data.prepared_format import (
    IMAGE_EXTENSIONS,
    ITEM_FIELDS,
    DEFAULT_OPTIONAL,
    SPLITS,
    check_split,
    plain_name,
    read_id_map,
    validate_prepared,
)
from mmgenrec.io import InputError, atomic_dir, atomic_path, read_json, write_json

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- fetching


def archive_format(path: str | Path) -> str:
    """``zip``, ``gztar``, ``bztar``, ``xztar`` or ``tar``, from the first bytes (never from the name)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gztar"
    if head[:3] == b"BZh":
        return "bztar"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xztar"
    if head[257:262] == b"ustar":
        return "tar"
    if head.lstrip()[:1] == b"<":
        raise InputError(f"{path}: an HTML page, not an archive (a Google Drive quota, permission or "
                         f"virus-scan page? {len(head)} bytes read: {head[:60]!r})")
    raise InputError(f"{path}: not a zip or tar archive ({path.stat().st_size} bytes, first bytes {head[:16]!r})")


def _unsafe(name: str) -> bool:
    """Absolute paths (POSIX or Windows), drive letters and ``..`` components escape the extraction folder."""
    if not name or name.startswith(("/", "\\")):
        return True
    win = PureWindowsPath(name)
    if win.drive or win.root:
        return True
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return ".." in parts


def _check_members(path: Path, fmt: str) -> int:
    """Reject the whole archive when any member could land outside the extraction folder."""
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                bad = next((n for n in names if _unsafe(n)), None)
                if bad is not None:
                    raise InputError(f"{path}: archive member {bad!r} has an absolute path or '..'; refusing it")
                broken = zf.testzip()
                if broken is not None:
                    raise InputError(f"{path}: archive member {broken!r} is corrupt (CRC mismatch)")
                return len(names)
        with tarfile.open(path) as tf:
            members = tf.getmembers()
            for m in members:
                if _unsafe(m.name):
                    raise InputError(f"{path}: archive member {m.name!r} has an absolute path or '..'; refusing it")
                target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(m.name), m.linkname)
                if (m.issym() or m.islnk()) and (m.linkname.startswith("/") or _unsafe(posixpath.normpath(target))):
                    raise InputError(f"{path}: archive member {m.name!r} links outside the archive "
                                     f"({m.linkname!r}); refusing it")
            return len(members)
    except InputError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as e:
        raise InputError(f"{path}: corrupt or truncated {fmt} archive ({type(e).__name__}: {e})") from None


def unpack_safely(path: str | Path, extract_dir: str | Path) -> str:
    """Unpack a zip or tar archive (format from its magic bytes) after checking every member's path."""
    path, extract_dir = Path(path), Path(extract_dir)
    fmt = archive_format(path)
    _check_members(path, fmt)
    try:
        if fmt == "zip":
            shutil.unpack_archive(path, extract_dir, format="zip")
        else:
            shutil.unpack_archive(path, extract_dir, format=fmt, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot unpack the {fmt} archive ({type(e).__name__}: {e})") from None
    return fmt


def find_prepared(root: str | Path, name: str) -> Path:
    """The one folder under ``root`` that holds ``<name>.inter.json`` (archives often add a top-level folder)."""
    root = Path(root)
    hits = sorted(p.parent for p in root.rglob(f"{name}.inter.json")
                  if p.is_file() and "__MACOSX" not in p.relative_to(root).parts)
    if not hits:
        top = ", ".join(sorted(p.name for p in root.iterdir())) or "nothing"
        raise InputError(f"the archive holds no {name}.inter.json (top level: {top}); wrong archive or name?")
    if len(hits) > 1:
        rel = ", ".join(str(h.relative_to(root)) for h in hits)
        raise InputError(f"the archive holds {name}.inter.json in {len(hits)} folders ({rel}); expected one")
    return hits[0]


def fetch_prepared_archive(
    dest_dir: str | Path,
    *,
    gdrive_id: str | None = None,
    url: str | None = None,
    name: str = "Instruments",
    require: tuple[str, ...] = ("inter.json", "item.json", "item2id"),
    allow_empty_titles: bool = False,
) -> dict:
    """Download (``gdown``) a zip / tar archive, unpack it safely, validate it, then move it onto ``dest_dir``.

    Everything happens in a temporary folder next to ``dest_dir``; on any error that folder is removed and
    ``dest_dir`` is left as it was (not created when it did not exist). Returns the validation report plus
    ``source``, ``archive_format``, ``archive_bytes``, ``archive_sha256`` and ``dest``.
    """
    import gdown

    if (gdrive_id is None) == (url is None):
        raise ValueError("give exactly one of gdrive_id= or url=")
    source = f"gdrive:{gdrive_id}" if gdrive_id is not None else url
    dest_dir = Path(dest_dir)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest_dir.parent, prefix=f".{dest_dir.name}.fetch."))
    try:
        archive = work / "archive"
        try:
            got = gdown.download(**({"id": gdrive_id} if gdrive_id is not None else {"url": url}),
                                 output=str(archive), quiet=False)
        except Exception as e:  # gdown and requests raise many types; all mean "no archive"
            raise InputError(f"{source}: download failed ({type(e).__name__}: {e})") from None
        if not got or not archive.is_file():
            raise InputError(f"{source}: download failed (gdown returned {got!r})")
        if archive.stat().st_size == 0:
            raise InputError(f"{source}: the download is empty")
        unpacked = work / "unpacked"
        unpacked.mkdir()
        try:
            fmt = unpack_safely(archive, unpacked)
            found = find_prepared(unpacked, name)
            report = validate_prepared(found, name, require=require, allow_empty_titles=allow_empty_titles)
        except InputError as e:
            raise InputError(f"{source}: {e}") from None
        report.update(source=source, archive_format=fmt, archive_bytes=archive.stat().st_size,
                      archive_sha256=sha256_file(archive), dest=str(dest_dir))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(found, 0o777 & ~mask)  # mkdtemp makes 0700 when the archive had no top-level folder
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        os.replace(found, dest_dir)
        report["folder"] = str(dest_dir)
        log.info("%s -> %s: %d users, %d items", source, dest_dir, report["n_users"], report["n_items"])
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------- import


def _text(value, sep: str = " ") -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return sep.join(t for t in (_text(v, sep) for v in value) if t)
    return str(value)


def _find_image(images: Path | None, rec: dict, asin: str | None, iid: str) -> Path | None:
    """The item's image in the source ``images/`` folder, first readable of: the record's own ``image`` name,
    ``<asin>.jpg|.jpeg|.png|.webp`` (asins that are safe file names), ``<item id>.<same extensions>``."""
    if images is None:
        return None
    candidates = []
    if plain_name(rec.get("image")):
        candidates.append(rec["image"])
    stems = [s for s in (asin, iid) if s is not None and image_filename(s) == f"{s}.jpg"]
    candidates += [f"{stem}{ext}" for stem in stems for ext in IMAGE_EXTENSIONS]
    for cand in candidates:
        if is_readable_image(images / cand):
            return images / cand
    return None


def _copy_file(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def import_local_prepared(
    src_folder: str | Path,
    out_dir: str | Path,
    name: str,
    *,
    require: tuple[str, ...] = ("inter.json", "item.json"),
    allow_empty_titles: bool = False,
    max_history: int = 50,
) -> dict:
    """Validate ``src_folder`` and write our prepared files for ``name`` into ``out_dir``.

    Written: ``<name>.inter.json`` (compact, as ``prepare`` writes it), ``<name>.item.json`` with the keys
    ``title, description, brand, categories, asin, image`` (``asin`` from ``item2id``, or the record's own, else
    null; ``image`` see :func:`_find_image`, linked into ``out_dir/images``, else null; other fields of the
    source records are dropped and listed in the stats), ``<name>.item2id`` / ``.user2id`` /
    ``.item_enriched_v2.json`` when the source has them (an LC-Rec folder without ``item2id`` gets none: the
    asins are unknown and nothing is made up), the RecBole splits copied when the source has all three (they are
    checked against inter.json) or else written by the ``prepare`` writer, and ``<name>.stats.json`` (copied
    when the source has one, else ours). Returns the stats.
    """
    src_folder, out_dir = Path(src_folder), Path(out_dir)
    report = validate_prepared(src_folder, name, require=require, allow_empty_titles=allow_empty_titles,
                               optional=tuple(dict.fromkeys(("item.json", "item2id") + DEFAULT_OPTIONAL)))
    src = lambda suffix: src_folder / f"{name}.{suffix}"  # noqa: E731
    out = lambda suffix: out_dir / f"{name}.{suffix}"  # noqa: E731
    inter = read_json(src("inter.json"))
    # an ID-only folder (no item.json: e.g. the published Instruments split) gets empty item records: only
    # methods that need no item text can use it (the workflow refuses the others at planning, naming the file)
    has_item_text = src("item.json").is_file()
    items = read_json(src("item.json")) if has_item_text else {str(i): {} for i in range(report["n_items"])}
    has_item2id = src("item2id").is_file()
    id2asin = {i: a for a, i in read_id_map(src("item2id"), "asin").items()} if has_item2id else {}
    images = src_folder / "images" if (src_folder / "images").is_dir() else None

    counts = {"items_with_image": 0, "items_without_image": 0, "items_without_asin": 0,
              "items_empty_title": len(report.get("items_empty_title", []))}
    dropped_fields: set[str] = set()
    item_json = {}
    with atomic_dir(out_dir / "images") as img_tmp:
        for iid in sorted(items, key=int):
            rec = items[iid]
            asin = id2asin.get(int(iid), rec.get("asin"))
            asin = asin if isinstance(asin, str) and asin else None
            counts["items_without_asin"] += asin is None
            found = _find_image(images, rec, asin, iid)
            if found is not None and not (img_tmp / found.name).exists():
                link_or_copy(found, img_tmp / found.name)
            counts["items_with_image" if found is not None else "items_without_image"] += 1
            dropped_fields.update(k for k in rec if k not in ITEM_FIELDS + ("asin", "image"))
            item_json[iid] = {
                "title": _text(rec.get("title")), "description": _text(rec.get("description")),
                "brand": _text(rec.get("brand")), "categories": _text(rec.get("categories"), ", "),
                "asin": asin, "image": found.name if found is not None else None,
            }

    write_json(out("inter.json"), inter, indent=None)
    write_json(out("item.json"), item_json)
    if has_item2id:
        _write_lines(out("item2id"), (f"{id2asin[i]}\t{i}" for i in sorted(id2asin)))
    if src("user2id").is_file():
        user2id = read_id_map(src("user2id"), "user")
        _write_lines(out("user2id"), (f"{u}\t{i}" for u, i in sorted(user2id.items(), key=lambda x: x[1])))
    if src("item_enriched_v2.json").is_file():
        _copy_file(src("item_enriched_v2.json"), out("item_enriched_v2.json"))
    splits_present = all(src(s).is_file() for s in SPLITS)
    if splits_present:
        for s in SPLITS:
            if not report["present"].get(s):  # not validated yet (caller passed its own optional=)
                check_split(src(s), s, inter, report["n_items"])
            _copy_file(src(s), out(s))
    else:
        _write_recbole(out_dir, name, inter, max_history)

    lengths = sorted(len(s) for s in inter.values())
    result = {
        "category": name, "min_interactions": lengths[0],
        "n_users": len(inter), "n_items": report["n_items"], "n_interactions": sum(lengths),
        "density": sum(lengths) / (len(inter) * report["n_items"]),
        "seq_len": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1],
                    "mean": round(sum(lengths) / len(lengths), 3)},
        "counts": dict(sorted(counts.items())),
        "sources": {"prepared": str(src_folder)},
        "imported": {"item_text": has_item_text, "item2id": has_item2id, "user2id": src("user2id").is_file(),
                     "enriched": src("item_enriched_v2.json").is_file(),
                     "recbole": "copied" if splits_present else "written",
                     "item_fields_dropped": sorted(dropped_fields),
                     "other_files_not_imported": report["other_files"]},
    }
    if src("stats.json").is_file():
        _copy_file(src("stats.json"), out("stats.json"))
    else:
        write_json(out("stats.json"), result)
    log.info("imported %s from %s: %d users, %d items", name, src_folder, result["n_users"], result["n_items"])
    return result
