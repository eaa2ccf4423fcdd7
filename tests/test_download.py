"""download.py against a real HTTP server on 127.0.0.1: retries, timeouts, truncation, resume, verification."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from httpserver import File, Redirect, Sequence, Status, serve

from mmgenrec.data.download import (
    DownloadError,
    download_file,
    fetch_category_raw,
    make_session,
    read_manifest,
    write_manifest,
)

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
FAST = dict(progress=False, backoff=0.01, timeout=(2, 2), chunk_size=16 * 1024)


@pytest.fixture
def session():
    """Retries of the session itself without waiting (the library's default backs off for real)."""
    s = make_session(retries=3, backoff=0)
    yield s
    s.close()


def _ranges(base, path):
    return [h.get("Range") for h in base.requests_to(path)]


def test_plain_download_verified_and_manifest(tmp_path, session):
    with serve({"/f.bin": File(DATA)}) as base:
        dest = tmp_path / "out" / "f.bin"
        res = download_file(base + "/f.bin", dest, session=session, expected_sha256=SHA.upper(),
                            expected_size=len(DATA), **FAST)
        assert dest.read_bytes() == DATA
        assert not (tmp_path / "out" / "f.bin.part").exists()
        assert res["bytes"] == len(DATA) and res["sha256"] == SHA and res["attempts"] == 1
        assert res["resumed_from"] == 0 and res["skipped"] is False and res["path"] == str(dest)
        assert _ranges(base, "/f.bin") == [None]

        m = write_manifest(tmp_path / "out" / "manifest.json", [res])
        assert read_manifest(tmp_path / "out" / "manifest.json") == m
        (entry,) = m["files"]
        assert entry["name"] == "f.bin" and entry["url"] == base + "/f.bin"
        assert entry["bytes"] == len(DATA) and entry["sha256"] == SHA and entry["time"]


def test_existing_file_is_skipped_without_any_request(tmp_path, session):
    dest = tmp_path / "f.bin"
    dest.write_bytes(DATA)
    with serve({"/f.bin": File(DATA)}) as base:
        res = download_file(base + "/f.bin", dest, session=session, expected_sha256=SHA, **FAST)
        assert res["skipped"] is True and res["sha256"] == SHA and res["bytes"] == len(DATA)
        res = download_file(base + "/f.bin", dest, session=session, **FAST)  # no expected hash: skipped as well
        assert res["skipped"] is True
        assert base.count() == 0


def test_existing_file_with_wrong_hash_is_replaced(tmp_path, session):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old content")
    with serve({"/f.bin": File(DATA)}) as base:
        res = download_file(base + "/f.bin", dest, session=session, expected_sha256=SHA, **FAST)
    assert res["skipped"] is False and dest.read_bytes() == DATA


def test_404_fails_at_once_without_dest(tmp_path, session):
    dest = tmp_path / "missing.bin"
    with serve({}) as base:
        with pytest.raises(DownloadError) as e:
            download_file(base + "/missing.bin", dest, session=session, **FAST)
        assert base.count("/missing.bin") == 1  # a 404 is not retried
    msg = str(e.value)
    assert "/missing.bin" in msg and str(dest) in msg and "404" in msg
    assert not dest.exists()


def test_500_then_200_succeeds_through_retries(tmp_path, session):
    routes = {"/f.bin": Sequence(Status(500), Status(503, headers={"Retry-After": "0"}), File(DATA))}
    with serve(routes) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA, **FAST)
        assert base.count("/f.bin") == 3
    assert (tmp_path / "f.bin").read_bytes() == DATA and res["sha256"] == SHA


def test_5xx_forever_gives_up_cleanly(tmp_path):
    s = make_session(retries=1, backoff=0)
    with serve({"/f.bin": Status(502)}) as base:
        with pytest.raises(DownloadError, match="502") as e:
            download_file(base + "/f.bin", tmp_path / "f.bin", session=s, max_attempts=2, **FAST)
        assert base.count("/f.bin") == 4  # 2 attempts x (1 + 1 session retry): bounded
    assert "after 2 attempt(s)" in str(e.value)
    assert not (tmp_path / "f.bin").exists()


def test_stall_before_answer_times_out_then_retry_succeeds(tmp_path, session):
    routes = {"/f.bin": Sequence(File(DATA, stall_before=4), File(DATA))}
    with serve(routes) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA,
                            **{**FAST, "timeout": (2, 1.0)})
        assert base.count("/f.bin") == 2
    assert res["sha256"] == SHA and (tmp_path / "f.bin").read_bytes() == DATA


def test_stall_mid_body_resumes_with_range(tmp_path, session):
    routes = {"/f.bin": Sequence(File(DATA, stall_at=100_000, stall_for=4), File(DATA))}
    with serve(routes) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA,
                            **{**FAST, "timeout": (2, 1.0)})
        ranges = _ranges(base, "/f.bin")
    assert ranges[0] is None and ranges[1].startswith("bytes=") and 98_304 <= int(ranges[1][6:-1]) <= 100_000
    assert res["attempts"] == 2 and (tmp_path / "f.bin").read_bytes() == DATA


def test_stall_forever_fails_cleanly_with_small_timeouts(tmp_path):
    s = make_session(retries=0)
    with serve({"/f.bin": File(DATA, stall_before=5)}) as base:
        with pytest.raises(DownloadError, match="timed out|Timeout"):
            download_file(base + "/f.bin", tmp_path / "f.bin", session=s, max_attempts=2,
                          **{**FAST, "timeout": (1, 0.3)})
    assert not (tmp_path / "f.bin").exists()


def test_truncated_body_is_resumed_with_range(tmp_path, session):
    routes = {"/f.bin": Sequence(File(DATA, truncate_at=70_000), File(DATA, truncate_at=200_000), File(DATA))}
    with serve(routes) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA, **FAST)
        assert _ranges(base, "/f.bin") == [None, "bytes=70000-", "bytes=200000-"]
    assert res["attempts"] == 3 and (tmp_path / "f.bin").read_bytes() == DATA


def test_server_without_range_support_restarts_from_zero(tmp_path, session):
    routes = {"/f.bin": Sequence(File(DATA, truncate_at=120_000, ranges=False), File(DATA, ranges=False))}
    with serve(routes) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA, **FAST)
        assert _ranges(base, "/f.bin") == [None, "bytes=120000-"]  # asked, but got 200: whole file again
    assert res["resumed_from"] == 0 and (tmp_path / "f.bin").read_bytes() == DATA


def test_redirect_is_followed(tmp_path):
    with serve({"/old": Redirect("/new/f.bin"), "/new/f.bin": File(DATA)}) as base:  # and the default session
        res = download_file(base + "/old", tmp_path / "f.bin", expected_sha256=SHA, **FAST)
        assert base.count("/old") == 1 and base.count("/new/f.bin") == 1
    assert res["url"].endswith("/old") and (tmp_path / "f.bin").read_bytes() == DATA


def test_killed_download_resumes_on_the_next_run(tmp_path, session):
    dest = tmp_path / "f.bin"
    part = tmp_path / "f.bin.part"
    routes = {"/f.bin": Sequence(File(DATA, truncate_at=123_457), File(DATA))}
    with serve(routes) as base:
        with pytest.raises(DownloadError) as e:
            download_file(base + "/f.bin", dest, session=session, max_attempts=1, **FAST)
        assert "truncated" in str(e.value) and str(part) in str(e.value)
        assert not dest.exists()
        kept = part.read_bytes()
        assert len(kept) == 123_457 and kept == DATA[: len(kept)]

        res = download_file(base + "/f.bin", dest, session=session, expected_sha256=SHA, **FAST)
        assert _ranges(base, "/f.bin") == [None, f"bytes={len(kept)}-"]
    assert res["resumed_from"] == len(kept) and res["attempts"] == 1
    assert dest.read_bytes() == DATA and not part.exists()


def test_kill_9_mid_download_then_resume(tmp_path):
    """A real process killed while the body is arriving: the .part file holds a clean prefix and is resumed."""
    dest, part = tmp_path / "f.bin", tmp_path / "f.bin.part"
    routes = {"/f.bin": Sequence(File(DATA, stall_at=150_000, stall_for=30), File(DATA))}
    with serve(routes) as base:
        code = ("import sys; from mmgenrec.data.download import download_file; "
                "download_file(sys.argv[1], sys.argv[2], progress=False, chunk_size=8192, timeout=(5, 60))")
        proc = subprocess.Popen([sys.executable, "-c", code, base + "/f.bin", str(dest)])
        try:
            deadline = time.monotonic() + 30
            while not (part.exists() and part.stat().st_size >= 100_000) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert not dest.exists()
        kept = part.read_bytes()
        assert 0 < len(kept) <= 150_000 and kept == DATA[: len(kept)]
        res = download_file(base + "/f.bin", dest, expected_sha256=SHA, **FAST)
        assert _ranges(base, "/f.bin") == [None, f"bytes={len(kept)}-"]
    assert res["resumed_from"] == len(kept) and dest.read_bytes() == DATA and not part.exists()


def test_complete_partial_file_and_416(tmp_path, session):
    (tmp_path / "f.bin.part").write_bytes(DATA)  # the body had fully arrived when the process was killed
    with serve({"/f.bin": File(DATA)}) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA, **FAST)
        assert _ranges(base, "/f.bin") == [f"bytes={len(DATA)}-"]
    assert res["resumed_from"] == len(DATA) and (tmp_path / "f.bin").read_bytes() == DATA


def test_sha_mismatch_fails_and_never_leaves_dest(tmp_path, session):
    with serve({"/f.bin": File(DATA)}) as base:
        with pytest.raises(DownloadError, match="sha256"):
            download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256="0" * 64, **FAST)
        with pytest.raises(DownloadError, match="size"):
            download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_size=len(DATA) + 1, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_bad_resume_is_detected_and_downloaded_again(tmp_path, session):
    (tmp_path / "f.bin.part").write_bytes(b"x" * 1000)  # stale partial from another version of the file
    with serve({"/f.bin": File(DATA)}) as base:
        res = download_file(base + "/f.bin", tmp_path / "f.bin", session=session, expected_sha256=SHA, **FAST)
        assert _ranges(base, "/f.bin") == ["bytes=1000-", None]
    assert res["attempts"] == 2 and (tmp_path / "f.bin").read_bytes() == DATA


# ------------------------------------------------------------------------------------------ fetch_category_raw


def _gz_lines(records) -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode(), mtime=0)


REVIEWS = _gz_lines([{"reviewerID": f"U{i}", "asin": f"A{i % 7}", "overall": 5.0, "unixReviewTime": i}
                     for i in range(2000)])
META = _gz_lines([{"asin": f"A{i}", "title": f"item {i}" * 20} for i in range(500)])
TEMPLATES = dict(reviews_url_template="{category}_5.json.gz", meta_url_template="m/meta_{category}.json.gz")


def _templates(base):
    return {k: f"{base}/{v}" for k, v in TEMPLATES.items()}


def test_fetch_category_raw_writes_manifest(tmp_path, session):
    routes = {"/Demo_5.json.gz": File(REVIEWS), "/m/meta_Demo.json.gz": File(META)}
    with serve(routes) as base:
        m = fetch_category_raw("Demo", tmp_path / "raw", session=session, **_templates(base), **FAST)
        assert (tmp_path / "raw" / "Demo_5.json.gz").read_bytes() == REVIEWS
        assert (tmp_path / "raw" / "meta_Demo.json.gz").read_bytes() == META
        assert read_manifest(tmp_path / "raw" / "manifest.json") == m
        by_name = {e["name"]: e for e in m["files"]}
        assert set(by_name) == {"Demo_5.json.gz", "meta_Demo.json.gz"}
        assert by_name["Demo_5.json.gz"]["records"] == 2000 and by_name["meta_Demo.json.gz"]["records"] == 500
        assert by_name["meta_Demo.json.gz"]["sha256"] == hashlib.sha256(META).hexdigest()
        assert by_name["meta_Demo.json.gz"]["url"] == f"{base}/m/meta_Demo.json.gz"
        assert base.count() == 2

        m2 = fetch_category_raw("Demo", tmp_path / "raw", session=session, **_templates(base), **FAST)
        assert base.count() == 2  # everything there and verified: no request
        assert [(e["name"], e["sha256"]) for e in m2["files"]] == [(e["name"], e["sha256"]) for e in m["files"]]


def test_fetch_category_raw_truncated_gzip_is_rejected(tmp_path, session):
    # The server announces the short length itself, so the HTTP transfer looks complete: only the gzip check sees it.
    routes = {"/Demo_5.json.gz": File(REVIEWS), "/m/meta_Demo.json.gz": File(META[: len(META) // 2])}
    with serve(routes) as base:
        with pytest.raises(DownloadError, match="gzip") as e:
            fetch_category_raw("Demo", tmp_path / "raw", session=session, **_templates(base), **FAST)
    assert "meta_Demo.json.gz" in str(e.value)
    assert not (tmp_path / "raw" / "meta_Demo.json.gz").exists()
    assert not (tmp_path / "raw" / "meta_Demo.json.gz.part").exists()
    assert not (tmp_path / "raw" / "manifest.json").exists()
    assert (tmp_path / "raw" / "Demo_5.json.gz").read_bytes() == REVIEWS  # the good one is kept


def test_fetch_category_raw_rejects_unsafe_category(tmp_path):
    from mmgenrec.io import InputError

    with pytest.raises(InputError):
        fetch_category_raw("../etc", tmp_path, reviews_url_template="http://127.0.0.1:9/{category}",
                           meta_url_template="http://127.0.0.1:9/{category}")
