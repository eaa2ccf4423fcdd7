"""Every data source through the real Snakemake rules, up to the prepared files.

``download`` and ``prepared`` fetch from a real HTTP server on 127.0.0.1 started by the test; ``hm`` reads the
real H&M sample (skipped when ``../shared/data`` is absent).
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from httpserver import File, Sequence, Status, serve
from PIL import Image

from mmgenrec.data.images import image_filename
from mmgenrec.data.prepare import prepare_category
from mmgenrec.data.synthetic import generate_category
from smkrun import REPO, smk

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, categories: dict, **extra) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["categories"] = categories
    cfg.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "JPEG")
    im = Image.open(io.BytesIO(buf.getvalue()))
    assert im.size == (64, 64)
    return buf.getvalue()


def _striped_jpeg(seed: int) -> bytes:
    im = Image.new("RGB", (64, 64), (seed * 37 % 255, 90, 160))
    for x in range(0, 64, 8):
        for y in range(64):
            im.putpixel((x, y), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


def test_download_source_fetches_verifies_and_prepares(tmp_path):
    cat = "Tiny_Instruments"
    raw = tmp_path / "upstream"
    generate_category(raw, cat, n_groups=3, items_per_group=8, n_users=80, seed=4)
    # point the metadata's image URLs at our server; give a few items broken images
    meta = [json.loads(line) for line in gzip.open(raw / f"meta_{cat}.json.gz", "rt")]
    routes, expected_ok, expected_fail = {}, set(), {}
    for k, rec in enumerate(meta):
        if "imageURLHighRes" not in rec:
            expected_fail.setdefault(rec["asin"], "no-url")
            continue
        path = f"/img/{rec['asin']}.jpg"
        rec["imageURLHighRes"] = ["__BASE__" + path]
        rec["imageURL"] = []
        if k % 10 == 3:
            routes[path] = File(_jpeg((255, 255, 255)), content_type="image/jpeg")  # blank: rejected
            expected_fail[rec["asin"]] = "blank"
        elif k % 10 == 5:
            routes[path] = Sequence(Status(500), File(_striped_jpeg(k), content_type="image/jpeg"))
            expected_ok.add(rec["asin"])
        else:
            routes[path] = File(_striped_jpeg(k), content_type="image/jpeg")
            expected_ok.add(rec["asin"])
    reviews = (raw / f"{cat}_5.json.gz").read_bytes()
    with serve(routes) as base:
        meta_bytes = gzip.compress("".join(json.dumps(r).replace("__BASE__", base) + "\n" for r in meta).encode())
        routes[f"/reviews/{cat}_5.json.gz"] = File(reviews, ranges=False)
        routes[f"/meta/meta_{cat}.json.gz"] = Sequence(Status(503), File(meta_bytes))
        config = _config(tmp_path, {cat: {"source": "download"}}, download={
            "reviews_url": base + "/reviews/{category}_5.json.gz", "meta_url": base + "/meta/meta_{category}.json.gz",
            "images": {"enabled": True, "retries": 2, "timeout": 5}})
        work = tmp_path / "work"
        work.mkdir()
        smk(work, f"resources/amazon18/{cat}/raw.done", config=config)
        manifest = json.loads((work / "resources" / "amazon18" / cat / "raw.done").read_text())
        assert {Path(f["name"]).name for f in manifest["files"]} == {f"{cat}_5.json.gz", f"meta_{cat}.json.gz"}
        assert (work / "resources" / "amazon18" / cat / f"{cat}_5.json.gz").read_bytes() == reviews
        assert not (work / "resources" / "amazon18" / cat / "images.done").exists()  # only what was asked for

        target = f"results/{cat}/prepared/{cat}.inter.json"
        smk(work, target, config=config)
        n_image_requests = sum(base.count(p) for p in routes if p.startswith("/img/"))
        rerun = smk(work, target, config=config)
        assert "Nothing to be done" in rerun.stdout + rerun.stderr
        assert sum(base.count(p) for p in routes if p.startswith("/img/")) == n_image_requests

    root = work / "resources" / "amazon18" / cat
    report = json.loads((root / "images.done").read_text())
    reviewed = {json.loads(line)["asin"] for line in gzip.open(raw / f"{cat}_5.json.gz", "rt")}
    fetched = {p.stem for p in (root / "images").iterdir()}
    assert fetched == {image_filename(a)[:-4] for a in expected_ok & reviewed}
    failed = dict(line.split("\t")[::2] for line in (root / "images_failed.tsv").read_text().splitlines()[1:])
    orphans = reviewed - {rec["asin"] for rec in meta}
    assert len(orphans) == 5  # reviews of asins without metadata: listed, nothing requested
    assert failed == {**{a: r for a, r in expected_fail.items() if a in reviewed}, **dict.fromkeys(orphans, "no-metadata")}
    assert report["fetched"] == len(fetched) and report["failed"] == len(failed)

    items = json.loads((work / "results" / cat / "prepared" / f"{cat}.item.json").read_text())
    stats = json.loads((work / "results" / cat / "prepared" / f"{cat}.stats.json").read_text())
    with_image = {it["asin"] for it in items.values() if it["image"]}
    assert with_image == fetched & {it["asin"] for it in items.values()}
    assert stats["counts"]["items_with_image"] == len(with_image)
    linked = {p.name for p in (work / "results" / cat / "prepared" / "images").iterdir() if not p.name.startswith(".")}
    assert linked == {image_filename(a) for a in with_image}


def test_prepared_source_from_an_archive_url(tmp_path):
    cat = "Instruments"
    raw = tmp_path / "raw"
    generate_category(raw, cat, n_groups=3, items_per_group=8, n_users=80, seed=6)
    folder = tmp_path / "archive" / cat
    prepare_category(raw / f"meta_{cat}.json.gz", raw / f"{cat}_5.json.gz", raw / "images", folder, cat)
    shutil.rmtree(folder / "images")
    for suffix in ("train.inter", "valid.inter", "test.inter", "stats.json"):
        (folder / f"{cat}.{suffix}").unlink()  # as LC-Rec ships it: the import writes what is missing
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=cat)
    with serve({"/Instruments.tar.gz": File(buf.getvalue())}) as base:
        config = _config(tmp_path, {cat: {"source": "prepared", "url": base + "/Instruments.tar.gz"}})
        work = tmp_path / "work"
        work.mkdir()
        smk(work, f"results/{cat}/prepared/{cat}.test.inter", config=config)
        assert base.count("/Instruments.tar.gz") >= 1
    out = work / "results" / cat / "prepared"
    assert json.loads((out / f"{cat}.inter.json").read_text()) == json.loads((folder / f"{cat}.inter.json").read_text())
    src_items = json.loads((folder / f"{cat}.item.json").read_text())
    items = json.loads((out / f"{cat}.item.json").read_text())
    assert {k: v["title"] for k, v in items.items()} == {k: v["title"] for k, v in src_items.items()}
    assert all(v["image"] is None for v in items.values())
    assert (out / f"{cat}.test.inter").read_text().splitlines()[0].startswith("user_id:token")


def test_hm_source_on_the_real_sample(tmp_path, shared_data):
    hm = shared_data / "hm-sample"
    raw = tmp_path / "hm"
    raw.mkdir()
    for ours, theirs in (("articles.csv", "articles_train_sample.csv"), ("customers.csv", "customers_sample.csv"),
                         ("transactions_train.csv", "transactions_train_sample.csv"), ("images", "images")):
        (raw / ours).symlink_to(hm / theirs)
    # the sample is too sparse for 5-core (572 of 17,033 articles have 5 buyers); 3-core as a per-category override
    config = _config(tmp_path, {"HM": {"source": "hm", "raw_dir": str(raw), "prepare": {"min_interactions": 3}}})
    work = tmp_path / "work"
    work.mkdir()
    smk(work, "results/HM/prepared/HM.inter.json", config=config)
    stats = json.loads((work / "results" / "HM" / "prepared" / "HM.stats.json").read_text())
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (458, 724, 3459)
    items = json.loads((work / "results" / "HM" / "prepared" / "HM.item.json").read_text())
    assert all(len(it["asin"]) == 10 and it["asin"].startswith("0") for it in items.values())
    with_image = [it for it in items.values() if it["image"]]
    assert len(with_image) == 85
    assert all((work / "results" / "HM" / "prepared" / "images" / it["image"]).is_file() for it in with_image)
