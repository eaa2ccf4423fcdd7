"""Product images: safe file names derived from the asin, URL choice per metadata schema, decodability checks."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Amazon thumbnail URLs carry a size modifier before the extension: ..._SX38_SY50_CR,0,0,38,50_.jpg
_SIZE_MODIFIER = re.compile(r"\._[^/]*_\.(jpg|jpeg|png|gif)$", re.IGNORECASE)


def image_filename(asin: str) -> str:
    """A file name for the item's image that never comes from the data as a path.

    Ordinary asins (letters, digits, ``-``, ``_``) are used as they are; anything else (``/``, ``..``, spaces,
    unicode) is replaced by a hash so that a hostile or odd asin cannot escape the image folder.
    """
    asin = str(asin)
    if _SAFE.match(asin):
        return f"{asin}.jpg"
    return f"h_{hashlib.sha1(asin.encode('utf-8')).hexdigest()}.jpg"


def high_res_url(url: str) -> str:
    """Drop Amazon's thumbnail size modifier, which gives the full-size image at the same URL."""
    return _SIZE_MODIFIER.sub(r".\1", url)


def image_urls(meta: dict) -> list[str]:
    """Candidate image URLs of one metadata record, best first, for both published schemas.

    Older files carry ``imageURLHighRes`` / ``imageURL``; the current one carries ``image`` (thumbnails).
    """
    urls: list[str] = []
    for key in ("imageURLHighRes", "imageURL", "image"):
        value = meta.get(key) or []
        if isinstance(value, str):
            value = [value]
        for url in value:
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                url = high_res_url(url)
                if url not in urls:
                    urls.append(url)
    return urls


def is_readable_image(path: str | Path) -> bool:
    """True when ``path`` is a file PIL can fully decode."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # PIL raises many types for corrupt files
        return False


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra space); copy where linking is not possible."""
    try:
        os.link(src, dst)
    except OSError:  # another file system, or hard links not permitted
        shutil.copyfile(src, dst)


def load_item_image(image_dir: str | Path | None, name: str | None, item: str = "") -> Image.Image | None:
    """The prepared item image ``image_dir/name`` as RGB, or ``None`` when the item has none or it is unreadable
    (a warning names the item and file: the item is then used from its text only)."""
    if not name or image_dir is None:
        return None
    path = Path(image_dir) / name
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        log.warning("item %s: image %s unreadable (%s); text only", item or "?", path, e)
        return None

