"""Robust downloads of the raw Amazon-2018 files (multi-GB): resume, retries, verification, atomic results.

A download streams into ``<dest>.part`` next to ``dest``. The partial file survives failures and kills, so a rerun
asks the server only for the missing bytes (``Range: bytes=N-``). ``dest`` itself appears only once the whole file
is there and verified (size, sha256 when known), by one :func:`os.replace`; a file at ``dest`` is therefore always
complete, which is what Snakemake assumes of an output.

Entry points: :func:`make_session`, :func:`download_file`, :func:`fetch_category_raw` (the two raw files of one
category, checked to be complete gzip streams of JSON lines, with a ``manifest.json``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import http.client
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm
from urllib3.util import Retry

from mmgenrec.io import InputError, iter_json_lines, read_json, write_json

log = logging.getLogger(__name__)

USER_AGENT = f"mmgenrec/0.1 (research data download) python-requests/{requests.__version__}"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_SAFE_CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HASH_BLOCK = 8 << 20


class DownloadError(RuntimeError):
    """A download that could not be completed; the message names the URL, the destination and the last error."""


class _Retry(Exception):
    """A failure worth another attempt (network error, timeout, truncated body, 5xx)."""


class _Fatal(Exception):
    """A failure that another attempt will not fix (404, 403, invalid URL, local disk error)."""


class _Restart(Exception):
    """The partial file cannot be resumed (server answered a different range): start again from byte 0."""


def make_session(
    retries: int = 5,
    backoff: float = 0.5,
    status_forcelist: Iterable[int] = (429, 500, 502, 503, 504),
    *,
    pool_maxsize: int = 10,
) -> requests.Session:
    """A :class:`requests.Session` whose adapters retry connection errors, timeouts before the answer and the
    statuses in ``status_forcelist`` (GET/HEAD only), with exponential backoff and ``Retry-After`` respected.

    After the retries are used up the last response is returned as it is (no exception): callers look at the
    status themselves. Errors in the middle of a body are not retried here; :func:`download_file` resumes them.
    """
    kwargs: dict[str, Any] = dict(
        total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff, backoff_max=60,
        status_forcelist=frozenset(status_forcelist), allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True, raise_on_status=False,
    )
    try:
        retry = Retry(**kwargs, retry_after_max=300)  # a server may not park us for hours (urllib3 >= 2.6)
    except TypeError:
        retry = Retry(**kwargs)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=max(10, pool_maxsize), pool_maxsize=pool_maxsize)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class _PartHash:
    """sha256 of the bytes in the partial file, kept up to date while streaming (no re-read after each chunk)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.h = hashlib.sha256()
        self.n = 0

    def sync(self, part: Path, size: int) -> None:
        """Make the state describe the first ``size`` bytes of ``part`` (re-reads only when out of step)."""
        if self.n == size:
            return
        self.reset()
        if size:
            with open(part, "rb") as f:
                while self.n < size and (block := f.read(min(_HASH_BLOCK, size - self.n))):
                    self.update(block)

    def update(self, chunk: bytes) -> None:
        self.h.update(chunk)
        self.n += len(chunk)


def _int_header(resp: requests.Response, name: str) -> int | None:
    value = resp.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _body_chunks(resp: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The body exactly as sent (no content decoding, so byte offsets match the server's); network trouble
    while reading becomes :class:`_Retry`."""
    it = resp.raw.stream(chunk_size, decode_content=False)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as e:
            raise _Retry(f"connection broken while reading the body ({type(e).__name__}: {e})") from e
        if chunk:
            yield chunk


def _get(session: requests.Session, url: str, headers: dict, timeout) -> requests.Response:
    try:
        return session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True)
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
            requests.exceptions.TooManyRedirects) as e:
        raise _Fatal(f"{type(e).__name__}: {e}") from e
    except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException) as e:
        raise _Retry(f"{type(e).__name__}: {e}") from e


def _attempt(session, url, part: Path, offset: int, state: _PartHash, info: dict, *, timeout, chunk_size, progress,
             expected_size) -> tuple[int, bool]:
    """One request. Returns ``(size_of_part, resumed)`` once the body is fully received. ``info["resumed_from"]``
    is set by the first answer of the call: the partial bytes the server let us keep."""
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with _get(session, url, headers, timeout) as resp:
        status = resp.status_code
        total = None
        if offset and status == 416:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
            remote = int(m.group(1)) if m else None
            if remote == offset or (remote is None and expected_size == offset):
                log.info("%s: the partial file already holds all %d bytes", url, offset)
                info.setdefault("resumed_from", offset)
                return offset, True
            raise _Restart(f"server refused the range from byte {offset} (remote size {remote})")
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            start = int(m.group(1)) if m else -1
            if start != offset:
                raise _Restart(f"asked for bytes from {offset}, server sent Content-Range "
                               f"{resp.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            resumed = offset > 0
        elif status == 200:
            if offset:
                log.warning("%s: server ignored the Range header (no resume support); restarting from byte 0", url)
            offset, resumed = 0, False
        elif status in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {status} {resp.reason}")
        else:
            raise _Fatal(f"HTTP {status} {resp.reason}")

        info.setdefault("resumed_from", offset)
        length = _int_header(resp, "Content-Length")
        end = offset + length if length is not None else total
        if resumed:
            state.sync(part, offset)
        else:
            state.reset()
        mode = "ab" if resumed else "wb"
        written = 0
        try:
            f = open(part, mode)
        except OSError as e:
            raise _Fatal(f"cannot write {part}: {e}") from e
        with f, tqdm(total=end, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=Path(part).name[:-5], disable=not progress, leave=False) as bar:
            if resumed:
                f.seek(offset)
                f.truncate()  # the file may have grown since we looked (another writer would be a bug anyway)
            broken: _Retry | None = None
            try:
                for chunk in _body_chunks(resp, chunk_size):
                    try:
                        f.write(chunk)
                    except OSError as e:
                        raise _Fatal(f"cannot write {part}: {e}") from e
                    state.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except _Retry as e:
                broken = e
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _Fatal(f"cannot write {part}: {e}") from e
        size = offset + written
        if end is not None and size < end:
            raise _Retry(f"truncated body: received {size} of {end} bytes" + (f"; {broken}" if broken else ""))
        if broken:
            raise broken
        return size, resumed


def _existing_ok(dest: Path, expected_sha256: str | None, expected_size: int | None) -> tuple[bool, str, str]:
    size = dest.stat().st_size
    if expected_size is not None and size != expected_size:
        return False, "", f"has {size} bytes, expected {expected_size}"
    digest = sha256_file(dest)
    if expected_sha256 and digest != expected_sha256:
        return False, digest, f"sha256 {digest} != expected {expected_sha256}"
    return True, digest, ""


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = (10, 60),
    chunk_size: int = 1 << 20,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    max_attempts: int = 5,
    progress: bool = True,
    backoff: float = 1.0,
) -> dict[str, Any]:
    """Download ``url`` to ``dest`` through ``dest + ".part"``, resuming whatever an earlier run left there.

    Retries (at most ``max_attempts`` requests of its own, with ``backoff * 2**k`` seconds between them, on top of
    the session's own retries) connection errors, timeouts, truncated bodies and 5xx/429; 4xx other than 408/429
    fail at once. A 200 answer to a Range request restarts from byte 0; 416 with a partial file of the full size
    completes it. The result is checked against ``expected_size`` / ``expected_sha256`` before it is renamed onto
    ``dest``. If ``dest`` already exists (and matches what is expected) nothing is requested.

    Returns ``{"url", "path", "bytes", "sha256", "resumed_from", "attempts", "seconds", "skipped"}``.
    Raises :class:`DownloadError`; the partial file is kept for a later resume unless its content was proven wrong.
    """
    t0 = time.monotonic()
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    expected_sha256 = expected_sha256.strip().lower() if expected_sha256 else None
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")

    def result(size: int, digest: str, resumed_from: int, attempts: int, skipped: bool) -> dict[str, Any]:
        return {"url": url, "path": str(dest), "bytes": size, "sha256": digest, "resumed_from": resumed_from,
                "attempts": attempts, "seconds": round(time.monotonic() - t0, 3), "skipped": skipped}

    if dest.exists():
        ok, digest, why = _existing_ok(dest, expected_sha256, expected_size)
        if ok:
            log.info("%s exists (%d bytes, sha256 %s): not downloading it again", dest, dest.stat().st_size, digest)
            return result(dest.stat().st_size, digest, 0, 0, True)
        log.warning("%s exists but %s: deleting it and downloading it again", dest, why)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)

    own_session = session is None
    session = session or make_session()
    state = _PartHash()
    info: dict[str, int] = {}
    last_error = "no attempt made"
    attempts = 0
    try:
        while attempts < max_attempts:
            attempts += 1
            offset = part.stat().st_size if part.exists() else 0
            if expected_size is not None and offset > expected_size:
                log.warning("%s is larger (%d) than the expected size %d: starting again", part, offset, expected_size)
                part.unlink()
                offset = 0
            try:
                size, resumed = _attempt(session, url, part, offset, state, info, timeout=timeout,
                                         chunk_size=chunk_size, progress=progress, expected_size=expected_size)
            except _Fatal as e:
                raise DownloadError(f"download of {url} to {dest} failed: {e}") from None
            except _Restart as e:
                last_error = str(e)
                log.warning("%s: %s; discarding %d partial bytes", url, e, offset)
                part.unlink(missing_ok=True)
                state.reset()
                continue
            except _Retry as e:
                last_error = str(e)
                if attempts < max_attempts:
                    delay = min(backoff * 2 ** (attempts - 1), 60.0)
                    log.warning("%s: attempt %d/%d failed (%s); %s bytes kept in %s; retrying in %.1fs",
                                url, attempts, max_attempts, e, part.stat().st_size if part.exists() else 0,
                                part.name, delay)
                    time.sleep(delay)
                continue
            resumed_from = info.get("resumed_from", 0)
            state.sync(part, size)
            digest = state.h.hexdigest()
            problem = None
            if expected_size is not None and size != expected_size:
                problem = f"size {size} != expected {expected_size}"
            elif expected_sha256 and digest != expected_sha256:
                problem = f"sha256 {digest} != expected {expected_sha256}"
            if problem:
                part.unlink(missing_ok=True)
                state.reset()
                last_error = f"verification failed: {problem}"
                if resumed or offset:  # a resumed file may mix two versions of the remote file: once more from 0
                    log.warning("%s: %s after a resume; downloading the whole file again", url, problem)
                    continue
                raise DownloadError(f"download of {url} to {dest} failed: {last_error} (partial file deleted)")
            os.replace(part, dest)
            log.info("%s -> %s: %d bytes, sha256 %s (%d attempt(s), resumed from byte %d)",
                     url, dest, size, digest, attempts, resumed_from)
            return result(size, digest, resumed_from, attempts, False)
    finally:
        if own_session:
            session.close()
    kept = part.stat().st_size if part.exists() else 0
    raise DownloadError(
        f"download of {url} to {dest} failed after {attempts} attempt(s): {last_error}; "
        f"{kept} bytes kept in {part} (a rerun resumes from there)"
    )


# ---------------------------------------------------------------------------------------------- manifest


def _mtime_iso(path: Path) -> str:
    return _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def write_manifest(path: str | os.PathLike, entries: Iterable[dict]) -> dict:
    """Write (atomically) ``{"files": [{"name", "url", "bytes", "sha256", "time", ...}, ...]}`` and return it.

    Each entry needs ``url``, ``bytes`` and ``sha256`` and either ``name`` or ``path`` (stored as the file name,
    relative to the manifest's folder). ``time`` defaults to the file's modification time (when it was completed).
    """
    path = Path(path)
    files = []
    for e in entries:
        missing = {"url", "bytes", "sha256"} - set(e)
        if missing or not ({"name", "path"} & set(e)):
            raise ValueError(f"manifest entry {e!r} lacks {sorted(missing) or 'name/path'}")
        name = e.get("name") or Path(e["path"]).name
        entry = {"name": name, "url": e["url"], "bytes": int(e["bytes"]), "sha256": e["sha256"]}
        if e.get("time"):
            entry["time"] = e["time"]
        else:
            f = path.parent / name
            entry["time"] = _mtime_iso(f) if f.exists() else _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds")
        for k, v in e.items():
            if k in ("records", "verified"):
                entry[k] = v
        files.append(entry)
    manifest = {"files": sorted(files, key=lambda x: x["name"])}
    write_json(path, manifest)
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """Read a manifest written by :func:`write_manifest`; a malformed one raises :class:`InputError`."""
    path = Path(path)
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise InputError(f"{path}: not a download manifest (expected an object with a 'files' list)")
    for i, e in enumerate(manifest["files"]):
        if not isinstance(e, dict) or not {"name", "url", "bytes", "sha256"} <= set(e):
            raise InputError(f"{path}: files[{i}] lacks one of name, url, bytes, sha256")
    return manifest


# ---------------------------------------------------------------------------------------------- category


def _fill(template: str, category: str) -> str:
    try:
        return template.format(category=category)
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(f"URL template {template!r}: only {{category}} can be filled in ({type(e).__name__}: {e})"
                         ) from None


def _check_json_lines_gz(path: Path, url: str) -> int:
    """Read the whole file; a truncated gzip or a bad line deletes it and raises :class:`DownloadError`."""
    n = 0
    try:
        for n, _ in iter_json_lines(path):
            pass
    except InputError as e:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{url} -> {path}: the downloaded file is not a complete gzip file of JSON lines ({e}). "
            f"It was deleted; run again to download it afresh (the server may have sent a truncated or wrong file)"
        ) from None
    if n == 0:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{url} -> {path}: the downloaded file holds no records; it was deleted")
    return n


def raw_file_name(category: str, kind: str) -> str:
    """The published file name of a category's ``reviews`` (5-core) or ``meta`` file."""
    return {"reviews": f"{category}_5.json.gz", "meta": f"meta_{category}.json.gz"}[kind]


def fetch_raw_file(category: str, kind: str, url_template: str, out_dir: str | os.PathLike, *,
                   session: requests.Session | None = None, progress: bool = True, previous: dict | None = None,
                   **download_kwargs: Any) -> dict:
    """Download one raw file (``kind``: reviews or meta) into ``out_dir`` and check that it is a complete gzip
    stream of JSON lines with at least one record; return its manifest entry. One file per call, so that the
    workflow runs one job per file: a finished download survives its sibling's failure.

    ``previous``: entries of an earlier manifest by name; a file skipped as already there whose entry says it was
    verified with the same size and sha256 is not read again."""
    if not isinstance(category, str) or not _SAFE_CATEGORY.match(category) or ".." in category:
        raise InputError(f"category {category!r}: only letters, digits, '_', '-' and '.' are allowed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = raw_file_name(category, kind)
    url = _fill(url_template, category)
    dest = out_dir / name
    own_session = session is None
    session = session or make_session()
    try:
        res = download_file(url, dest, session=session, progress=progress, **download_kwargs)
    finally:
        if own_session:
            session.close()
    old = (previous or {}).get(name)
    if (res["skipped"] and old and old.get("verified") and old.get("bytes") == res["bytes"]
            and old.get("sha256") == res["sha256"] and "records" in old):
        records = old["records"]
    else:
        log.info("checking %s (reading every line)", dest)
        records = _check_json_lines_gz(dest, url)
    return {**res, "name": name, "records": records, "verified": True}


def fetch_category_raw(
    category: str,
    out_dir: str | os.PathLike,
    *,
    reviews_url_template: str,
    meta_url_template: str,
    session: requests.Session | None = None,
    progress: bool = True,
    **download_kwargs: Any,
) -> dict:
    """Download ``{category}_5.json.gz`` and ``meta_{category}.json.gz`` into ``out_dir`` and check that both are
    complete gzip streams of JSON lines; write ``out_dir/manifest.json`` and return the manifest.

    The templates are ``str.format`` strings with a ``{category}`` field. Files already listed as verified in an
    existing manifest with the same size and sha256 are not read again. Extra keyword arguments go to
    :func:`download_file`.
    """
    if not isinstance(category, str) or not _SAFE_CATEGORY.match(category) or ".." in category:
        raise InputError(f"category {category!r}: only letters, digits, '_', '-' and '.' are allowed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    previous: dict[str, dict] = {}
    if manifest_path.exists():
        try:
            previous = {e["name"]: e for e in read_manifest(manifest_path)["files"]}
        except InputError as e:
            log.warning("ignoring the unreadable manifest %s (%s)", manifest_path, e)

    own_session = session is None
    session = session or make_session()
    try:
        entries = [fetch_raw_file(category, kind, template, out_dir, session=session, progress=progress,
                                  previous=previous, **download_kwargs)
                   for kind, template in (("reviews", reviews_url_template), ("meta", meta_url_template))]
    finally:
        if own_session:
            session.close()
    manifest = write_manifest(manifest_path, entries)
    log.info("%s: %s", category, ", ".join(f"{e['name']} {e['bytes']} bytes, {e['records']} records"
                                            for e in manifest["files"]))
    return manifest
