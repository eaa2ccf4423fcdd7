"""fetch_images.py against a real HTTP server on 127.0.0.1: every rejection reason, fallbacks, reruns, safe names."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from httpserver import File, Redirect, Sequence, Status, serve
from PIL import Image

from mmgenrec.data.fetch_images import fetch_images
from mmgenrec.data.images import image_filename
from mmgenrec.io import read_json, write_jsonl_gz

MAX_BYTES = 100_000
HOSTILE = "../../x"


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _noise(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = len(mode)
    arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr if channels > 1 else arr[:, :, 0], mode)


JPEG = _encode(_noise(64, 48, seed=1), "JPEG")
JPEG2 = _encode(_noise(40, 40, seed=2), "JPEG")
PNG_RGBA = _encode(_noise(50, 60, "RGBA", seed=3), "PNG")
GIF_1x1 = _encode(Image.new("P", (1, 1)), "GIF")
WHITE = _encode(Image.new("RGB", (120, 120), (255, 255, 255)), "JPEG")
TINY = _encode(_noise(20, 80, seed=4), "PNG")
BIG = _encode(_noise(300, 300, seed=5), "PNG")  # ~270 KB > MAX_BYTES
CORRUPT = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20

ROUTES = {
    "/img/good.jpg": File(JPEG, content_type="image/jpeg"),
    "/img/good.png": File(PNG_RGBA, content_type="image/png"),
    "/img/second.jpg": File(JPEG2, content_type="image/jpeg"),
    "/img/corrupt.jpg": File(CORRUPT, content_type="image/jpeg"),
    "/img/pixel.gif": File(GIF_1x1, content_type="image/gif"),
    "/img/white.jpg": File(WHITE, content_type="image/jpeg"),
    "/img/tiny.png": File(TINY, content_type="image/png"),
    "/img/big.png": File(BIG, content_type="image/png"),
    "/img/big-chunked.png": File(BIG, content_type="image/png", chunked=True),
    "/img/page.jpg": File(b"<html>captcha</html>", content_type="text/html; charset=utf-8"),
    "/img/flaky.jpg": Sequence(Status(500), File(JPEG, content_type="image/jpeg")),
    "/img/moved.jpg": Redirect("/img/final.jpg"),
    "/img/final.jpg": File(JPEG2, content_type="image/jpeg"),
    "/I/thumb.jpg": File(JPEG, content_type="image/jpeg"),  # what the thumbnail URL is rewritten to
    "/img/hostile.jpg": File(JPEG2, content_type="image/jpeg"),
    "/img/no-img-sm.gif": File(GIF_1x1, content_type="image/gif"),
    "/img/to-placeholder.jpg": Redirect("/img/no-img-sm.gif"),
    "/img/half.jpg": File(JPEG[: len(JPEG) // 2], content_type="image/jpeg"),
    "/img/cut.jpg": Sequence(File(JPEG, content_type="image/jpeg", truncate_at=1000),
                             File(JPEG, content_type="image/jpeg")),
}

# asin -> (record fields, expected outcome: None = fetched, else the failure reason)
ITEMS = {
    "GOODJPG": ({"imageURLHighRes": ["/img/good.jpg"], "imageURL": ["/img/good.jpg"]}, None),
    "GOODPNG": ({"image": ["/img/good.png"]}, None),
    "FALLBACK": ({"imageURLHighRes": ["/img/gone.jpg", "/img/second.jpg"]}, None),
    "CORRUPT": ({"imageURLHighRes": ["/img/corrupt.jpg"]}, "corrupt"),
    "HALFJPG": ({"image": ["/img/half.jpg"]}, "corrupt"),
    "CUT": ({"image": ["/img/cut.jpg"]}, None),  # connection dropped mid-body: the URL is tried again
    "PIXEL": ({"image": ["/img/pixel.gif"]}, "placeholder"),
    "NOIMG": ({"imageURL": ["/img/no-img-sm._CB485946458_.gif"]}, "placeholder"),
    "TOPLACEHOLDER": ({"imageURL": ["/img/to-placeholder.jpg"]}, "placeholder"),
    "WHITE": ({"imageURLHighRes": ["/img/white.jpg"]}, "blank"),
    "TINY": ({"image": ["/img/tiny.png"]}, "tiny"),
    "BIG": ({"imageURLHighRes": ["/img/big.png"]}, "too-large"),
    "BIGCHUNKED": ({"imageURLHighRes": ["/img/big-chunked.png"]}, "too-large"),
    "HTML": ({"imageURLHighRes": ["/img/page.jpg"]}, "content-type"),
    "FLAKY": ({"imageURLHighRes": ["/img/flaky.jpg"]}, None),
    "NOURL": ({"imageURLHighRes": [], "imageURL": []}, "no-url"),
    "NOURL2": ({"image": ["not a url"]}, "no-url"),
    "DEAD": ({"image": ["/img/gone.jpg"]}, "http-404"),
    "REDIRECT": ({"imageURLHighRes": ["/img/moved.jpg"]}, None),
    "THUMB": ({"image": ["/I/thumb._SX38_SY50_CR,0,0,38,50_.jpg"]}, None),
    HOSTILE: ({"imageURLHighRes": ["/img/hostile.jpg"]}, None),
}
FETCHED = {a for a, (_, why) in ITEMS.items() if why is None}
FAILED = {a: why for a, (_, why) in ITEMS.items() if why is not None}


def _write_meta(path, base):
    records = []
    for asin, (fields, _) in ITEMS.items():
        rec = {"asin": asin, "title": f"item {asin}"}
        for key, urls in fields.items():
            rec[key] = [u if not u.startswith("/") else base + u for u in urls]
        records.append(rec)
    write_jsonl_gz(path, records)


def _read_tsv(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "asin\turl\treason\tdetail"
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 4 for r in rows)
    return rows


@pytest.fixture
def world(tmp_path):
    with serve(ROUTES) as base:
        meta = tmp_path / "raw" / "meta_Demo.json.gz"
        _write_meta(meta, base)
        yield base, meta, tmp_path / "raw" / "images"


def test_fetch_images_outcomes_report_and_rerun(world):
    base, meta, out = world
    report = fetch_images(meta, out, max_bytes=MAX_BYTES, max_workers=4, progress=False)

    saved = sorted(p.name for p in out.iterdir())
    assert saved == sorted(image_filename(a) for a in FETCHED)  # nothing else: no temporaries, nothing failed
    for name in saved:
        with Image.open(out / name) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
    with Image.open(out / image_filename("GOODPNG")) as im:
        assert im.size == (50, 60)
    with Image.open(out / image_filename("GOODJPG")) as im:
        assert im.size == (64, 48)

    rows = _read_tsv(out.parent / "images_failed.tsv")
    assert [r[0] for r in rows] == sorted(FAILED)
    assert {r[0]: r[2] for r in rows} == FAILED
    urls = {r[0]: r[1] for r in rows}
    assert urls["DEAD"] == base + "/img/gone.jpg" and urls["NOURL"] == ""
    assert report == read_json(out.parent / "images_report.json")
    assert report["n_items"] == len(ITEMS) and report["fetched"] == len(FETCHED)
    assert report["already_present"] == 0 and report["failed"] == len(FAILED)
    assert report["by_reason"] == {"blank": 1, "content-type": 1, "corrupt": 2, "http-404": 1, "no-url": 2,
                                   "placeholder": 3, "tiny": 1, "too-large": 2}
    assert report["has_image"] == pytest.approx(len(FETCHED) / len(ITEMS))

    # requests as expected: fallback went on to the second URL, 500 retried, redirect followed, placeholder URL
    # never requested (only reached by TOPLACEHOLDER's redirect), thumbnail size modifier dropped
    assert base.count("/img/gone.jpg") == 2 and base.count("/img/second.jpg") == 1
    assert base.count("/img/flaky.jpg") == 2 and base.count("/img/final.jpg") == 1
    assert base.count("/img/no-img-sm.gif") == 1 and base.count("/img/no-img-sm._CB485946458_.gif") == 0
    assert base.count("/I/thumb.jpg") == 1 and base.count("/img/cut.jpg") == 2
    details = {r[0]: r[3] for r in rows}
    assert "Content-Length" in details["BIG"] and "more than" in details["BIGCHUNKED"]

    # rerun: the images there are not fetched again; only the failed items are tried once more
    good_paths = {"/img/good.jpg", "/img/good.png", "/img/second.jpg", "/img/flaky.jpg", "/img/moved.jpg",
                  "/img/final.jpg", "/I/thumb.jpg", "/img/hostile.jpg", "/img/cut.jpg"}
    n_before = {p: base.count(p) for p in good_paths}
    report2 = fetch_images(meta, out, max_bytes=MAX_BYTES, max_workers=4, progress=False)
    assert {p: base.count(p) for p in good_paths} == n_before
    assert report2["already_present"] == len(FETCHED) and report2["fetched"] == 0
    assert report2["failed"] == len(FAILED) and report2["by_reason"] == report["by_reason"]
    assert report2["has_image"] == report["has_image"]

    # rerun restricted to items that have their image: zero requests at all
    n = base.count()
    report3 = fetch_images(meta, out, asins=FETCHED, max_bytes=MAX_BYTES, progress=False)
    assert base.count() == n
    assert report3["already_present"] == len(FETCHED) and report3["failed"] == 0 and report3["has_image"] == 1.0


def test_hostile_asin_stays_inside_out_dir(world, tmp_path):
    base, meta, out = world
    report = fetch_images(meta, out, asins=[HOSTILE], progress=False)
    assert report["fetched"] == 1
    (saved,) = out.iterdir()
    assert saved.name == image_filename(HOSTILE) and saved.name.startswith("h_")
    assert saved.resolve().parent == out.resolve()
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    assert base.requests_to("/img/hostile.jpg")


def test_missing_and_broken_files_are_fetched_again(world):
    base, meta, out = world
    fetch_images(meta, out, asins=["GOODJPG", "GOODPNG"], progress=False)
    (out / image_filename("GOODJPG")).write_bytes(b"half a jpeg")  # unreadable: fetched again
    (out / image_filename("GOODPNG")).unlink()  # missing: fetched again
    (out / ".GOODJPG.jpg.abc123.jpg").write_bytes(b"left by a killed run")
    report = fetch_images(meta, out, asins=["GOODJPG", "GOODPNG", "NOT_IN_META"], progress=False,
                          report_dir=out.parent / "reports")
    assert report["fetched"] == 2 and report["already_present"] == 0
    assert report["by_reason"] == {"no-metadata": 1}
    assert sorted(p.name for p in out.iterdir()) == ["GOODJPG.jpg", "GOODPNG.jpg"]
    assert base.count("/img/good.jpg") == 2 and base.count("/img/good.png") == 2
    assert json.loads((out.parent / "reports" / "images_report.json").read_text())["n_items"] == 3
    rows = _read_tsv(out.parent / "reports" / "images_failed.tsv")
    assert [(r[0], r[2]) for r in rows] == [("NOT_IN_META", "no-metadata")]


def test_stalled_server_gives_timeout(tmp_path):
    routes = {"/slow.jpg": File(JPEG, content_type="image/jpeg", stall_before=5),
              "/ok.jpg": File(JPEG, content_type="image/jpeg")}
    with serve(routes) as base:
        meta = tmp_path / "meta.json.gz"
        write_jsonl_gz(meta, [{"asin": "SLOW", "imageURLHighRes": [base + "/slow.jpg"]},
                              {"asin": "SLOW2", "image": [base + "/slow.jpg", base + "/ok.jpg"]}])
        report = fetch_images(meta, tmp_path / "images", timeout=(1, 0.5), retries=1, progress=False)
        assert base.count("/slow.jpg") == 4  # 2 items x (1 + 1 retry)
    assert report["fetched"] == 1 and report["by_reason"] == {"timeout": 1}
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["SLOW2.jpg"]
