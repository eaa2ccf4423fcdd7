"""One image per item, fetched from the URLs of the metadata, checked, and saved as an RGB JPEG.

For every item (optionally only those in ``asins``) the candidate URLs of :func:`~mmgenrec.data.images.image_urls`
are tried best first; the first that yields a real image wins. An answer is rejected, with a reason recorded in
``images_failed.tsv``, when:

- ``http-<code>``: the final status (after the session's retries) is not 200
- ``timeout``: connect/read timeout (after retries); ``network``: any other connection failure
- ``content-type``: ``Content-Type`` does not start with ``image/``
- ``too-large``: more than ``max_bytes`` (announced or streamed), or an absurd pixel count
- ``corrupt``: PIL cannot verify and decode it
- ``placeholder``: Amazon's "no image" picture: a 1x1 GIF, or a URL containing ``no-img`` / ``no_image``
  (such URLs are not even requested)
- ``tiny``: a side shorter than ``min_side``
- ``blank``: near-uniform (pixel std < 2 on a grayscale thumbnail)
- ``no-url``: the item has no image URL; ``no-metadata``: an asin asked for is not in the metadata

Files are named only by :func:`~mmgenrec.data.images.image_filename` (never from a URL) and written atomically.
A rerun fetches only the items whose image file is missing or unreadable.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterable

import requests
from PIL import Image, ImageStat
from tqdm.auto import tqdm

from mmgenrec.data.download import make_session
from mmgenrec.data.images import image_filename, image_urls, is_readable_image
from mmgenrec.io import atomic_path, iter_json_lines, write_json, write_text

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
BLANK_STD = 2.0
MAX_PIXELS = 40_000_000  # a few-MB file that claims more pixels than this is a decompression bomb, not a photo
_PLACEHOLDER_URL = re.compile(r"no[-_]?img|no[-_]image", re.IGNORECASE)
_TMP_LEFTOVER = re.compile(r"^\..+\.jpg\.[^.]+\.jpg$")  # what atomic_path leaves behind after a kill -9


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _BodyBroken(Exception):
    """The connection broke while reading the body: worth another try of the same URL."""


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparent areas put on white (not black, which is what a plain convert gives)."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")  # 16-bit grayscale: scale to 8 bits first
    return im.convert("RGB")


def check_image(data: bytes, url: str = "", *, min_side: int = 32) -> Image.Image:
    """Decode and check one downloaded image; returns it as RGB or raises ``_Rejected``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, size = im.format, im.size
            if size[0] * size[1] > MAX_PIXELS:
                raise _Rejected("too-large", f"{size[0]}x{size[1]} pixels")
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = _to_rgb(im)
    except _Rejected:
        raise
    except Image.DecompressionBombError as e:
        raise _Rejected("too-large", str(e)) from None
    except Image.UnidentifiedImageError:
        raise _Rejected("corrupt", "not a recognised image format") from None
    except Exception as e:  # PIL raises many types for corrupt data
        raise _Rejected("corrupt", f"{type(e).__name__}: {e}") from None
    if fmt == "GIF" and size == (1, 1):
        raise _Rejected("placeholder", "1x1 GIF")
    if min(size) < min_side:
        raise _Rejected("tiny", f"{size[0]}x{size[1]} < {min_side}")
    thumb = rgb.convert("L")
    thumb.thumbnail((64, 64))
    std = ImageStat.Stat(thumb).stddev[0]
    if std < BLANK_STD:
        raise _Rejected("blank", f"pixel std {std:.2f} < {BLANK_STD}")
    return rgb


def _download(session: requests.Session, url: str, *, timeout, max_bytes: int) -> bytes:
    try:
        resp = session.get(url, stream=True, timeout=timeout, headers={"Accept": "image/*"})
    except requests.Timeout as e:
        raise _Rejected("timeout", f"{type(e).__name__}: {e}") from None
    except requests.exceptions.TooManyRedirects as e:
        raise _Rejected("network", f"too many redirects: {e}") from None
    except requests.RequestException as e:
        cause = "timeout" if "timed out" in str(e).lower() or "timeout" in str(e).lower() else "network"
        raise _Rejected(cause, f"{type(e).__name__}: {e}") from None
    with resp:
        if resp.history and _PLACEHOLDER_URL.search(resp.url):
            raise _Rejected("placeholder", f"redirected to Amazon 'no image' URL {resp.url}")
        if resp.status_code != 200:
            raise _Rejected(f"http-{resp.status_code}", f"HTTP {resp.status_code} {resp.reason}")
        ctype = resp.headers.get("Content-Type", "")
        if not ctype.strip().lower().startswith("image/"):
            raise _Rejected("content-type", f"Content-Type {ctype!r}")
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise _Rejected("too-large", f"Content-Length {length} > {max_bytes}")
        buf = bytearray()
        try:
            for chunk in resp.iter_content(64 * 1024):
                buf += chunk
                if len(buf) > max_bytes:
                    raise _Rejected("too-large", f"more than {max_bytes} bytes")
        except _Rejected:
            raise
        except (requests.RequestException, OSError) as e:
            raise _BodyBroken(f"{type(e).__name__}: {e}") from None
        if length and length.isdigit() and len(buf) < int(length) and "Content-Encoding" not in resp.headers:
            raise _BodyBroken(f"truncated body: {len(buf)} of {length} bytes")
        return bytes(buf)


def _fetch_item(session, asin: str, urls: list[str], dest: Path, *, timeout, max_bytes, min_side, retries
                ) -> tuple[str, str, str, str]:
    """Try the URLs in order; save the first good image. Returns ``(status, url, reason, detail)``."""
    failures: list[tuple[str, str, str]] = []
    for url in urls:
        try:
            if _PLACEHOLDER_URL.search(url):
                raise _Rejected("placeholder", "Amazon 'no image' URL")
            for attempt in range(retries + 1):
                try:
                    data = _download(session, url, timeout=timeout, max_bytes=max_bytes)
                    break
                except _BodyBroken as e:
                    if attempt == retries:
                        raise _Rejected("network", str(e)) from None
                    time.sleep(min(0.5 * 2**attempt, 5.0))
            rgb = check_image(data, url, min_side=min_side)
        except _Rejected as e:
            failures.append((url, e.reason, e.detail))
            continue
        with atomic_path(dest, suffix=".jpg") as tmp:
            rgb.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        return "fetched", url, "", ""
    url, reason, detail = failures[-1]
    if len(failures) > 1:
        detail += " | earlier: " + "; ".join(f"{u} -> {r}" for u, r, _ in failures[:-1])
    return "failed", url, reason, detail


def _tsv_field(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _read_items(meta_path: Path, wanted: set[str] | None) -> dict[str, list[str]]:
    """asin -> candidate URLs (duplicated metadata lines merge their URLs, first seen first)."""
    items: dict[str, list[str]] = {}
    for lineno, rec in iter_json_lines(meta_path):
        asin = rec.get("asin")
        if not isinstance(asin, (str, int)) or str(asin) == "":
            log.warning("%s: line %d has no asin; skipped", meta_path, lineno)
            continue
        asin = str(asin)
        if wanted is not None and asin not in wanted:
            continue
        urls = items.setdefault(asin, [])
        for u in image_urls(rec):
            if u not in urls:
                urls.append(u)
    return items


def fetch_images(
    meta_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    asins: Iterable[str] | None = None,
    max_workers: int = 8,
    timeout: float | tuple[float, float] = (5, 20),
    max_bytes: int = 5_000_000,
    min_side: int = 32,
    retries: int = 3,
    session: requests.Session | None = None,
    progress: bool = True,
    report_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Fetch one image per item of ``meta_path`` into ``out_dir/<image_filename(asin)>``.

    Writes ``images_failed.tsv`` (``asin, url, reason, detail``; sorted by asin) and ``images_report.json``
    into ``report_dir`` (default: the parent of ``out_dir``) and returns the report:
    ``{n_items, fetched, already_present, failed, by_reason, has_image, seconds}``.
    """
    t0 = time.monotonic()
    meta_path, out_dir = Path(meta_path), Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.iterdir():  # temporary files of a run that was killed
        if _TMP_LEFTOVER.match(leftover.name) and leftover.is_file():
            leftover.unlink()

    wanted = {str(a) for a in asins} if asins is not None else None
    items = _read_items(meta_path, wanted)
    failed: dict[str, tuple[str, str, str]] = {}
    if wanted is not None:
        for asin in wanted - set(items):
            failed[asin] = ("", "no-metadata", f"not in {meta_path.name}")

    todo: list[tuple[str, list[str], Path]] = []
    already = 0
    for asin, urls in items.items():
        dest = out_dir / image_filename(asin)
        if dest.exists():
            if is_readable_image(dest):
                already += 1
                continue
            log.warning("%s is unreadable; fetching it again", dest)
            dest.unlink()
        if not urls:
            failed[asin] = ("", "no-url", "no image URL in the metadata")
        else:
            todo.append((asin, urls, dest))

    fetched = 0
    if todo:
        own_session = session is None
        if own_session:
            session = make_session(retries=retries, backoff=0.5, pool_maxsize=max(1, max_workers))
        pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="fetch-image")
        try:
            futures = {
                pool.submit(_fetch_item, session, asin, urls, dest, timeout=timeout, max_bytes=max_bytes,
                            min_side=min_side, retries=retries): asin
                for asin, urls, dest in todo
            }
            with tqdm(total=len(todo), unit="img", desc="images", disable=not progress) as bar:
                for fut in as_completed(futures):
                    asin = futures[fut]
                    status, url, reason, detail = fut.result()
                    if status == "fetched":
                        fetched += 1
                    else:
                        failed[asin] = (url, reason, detail)
                    bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # let running fetches finish their atomic writes
            raise
        finally:
            pool.shutdown(wait=True)
            if own_session:
                session.close()

    n_items = len(items) + (len(wanted - set(items)) if wanted is not None else 0)
    by_reason = collections.Counter(reason for _, reason, _ in failed.values())
    report = {
        "n_items": n_items,
        "fetched": fetched,
        "already_present": already,
        "failed": len(failed),
        "by_reason": dict(sorted(by_reason.items())),
        "has_image": round((fetched + already) / n_items, 6) if n_items else 0.0,
        "seconds": round(time.monotonic() - t0, 3),
    }
    lines = ["asin\turl\treason\tdetail"]
    for asin in sorted(failed):
        url, reason, detail = failed[asin]
        lines.append("\t".join(_tsv_field(x) for x in (asin, url, reason, detail)))
    write_text(report_dir / "images_failed.tsv", "\n".join(lines) + "\n")
    write_json(report_dir / "images_report.json", report)
    log.info("images: %d items, %d fetched, %d already there, %d failed %s (has_image %.3f)", n_items, fetched,
             already, len(failed), dict(by_reason), report["has_image"])
    return report
