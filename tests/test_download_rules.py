"""The download rules through real Snakemake runs against a real HTTP server on 127.0.0.1, serving the real
Amazon-2018 Gift Cards files: a finished download survives its sibling's failure (one job per file)."""

from __future__ import annotations

import hashlib
import json

import yaml
from httpserver import File, Status, serve
from smkrun import REPO, smk

CAT = "Gift_Cards"


def test_reviews_survive_a_failing_metadata_download(shared_data, tmp_path):
    reviews = (shared_data / "amazon18" / f"{CAT}_5.json.gz").read_bytes()
    meta = (shared_data / "amazon18" / f"meta_{CAT}.json.gz").read_bytes()
    routes = {f"/r/{CAT}_5.json.gz": File(reviews), f"/m/meta_{CAT}.json.gz": Status(404)}
    work = tmp_path / "work"
    work.mkdir()
    root = work / "resources" / "amazon18" / CAT
    with serve(routes) as base:
        cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
        cfg["categories"] = {CAT: {"source": "download"}}
        cfg["download"] = {"reviews_url": base + "/r/{category}_5.json.gz",
                           "meta_url": base + "/m/meta_{category}.json.gz", "images": {"enabled": False}}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(cfg))
        target = f"resources/amazon18/{CAT}/raw.done"

        # --keep-going: with one core either download may be scheduled first; the reviews must be fetched and kept
        # whichever of them fails first (without it, a metadata failure first leaves the reviews unscheduled)
        first = smk(work, target, "--keep-going", config=config, check=False, cores=1)
        assert first.returncode != 0
        assert (root / f"{CAT}_5.json.gz").read_bytes() == reviews  # finished, kept
        assert not (root / f"meta_{CAT}.json.gz").exists() and not (root / "raw.done").exists()
        assert base.count(f"/r/{CAT}_5.json.gz") == 1
        assert base.count(f"/m/meta_{CAT}.json.gz") == 3  # the rule's 2 retries

        second = smk(work, target, "--keep-going", config=config, check=False, cores=1)
        assert second.returncode != 0
        assert base.count(f"/r/{CAT}_5.json.gz") == 1  # not downloaded again
        assert base.count(f"/m/meta_{CAT}.json.gz") == 6

        routes[f"/m/meta_{CAT}.json.gz"] = File(meta)  # the metadata comes back
        smk(work, target, config=config, cores=1)
        assert base.count(f"/r/{CAT}_5.json.gz") == 1
        manifest = json.loads((root / "raw.done").read_text())
        by_name = {f["name"]: f for f in manifest["files"]}
        assert by_name[f"{CAT}_5.json.gz"]["sha256"] == hashlib.sha256(reviews).hexdigest()
        assert by_name[f"meta_{CAT}.json.gz"]["sha256"] == hashlib.sha256(meta).hexdigest()
        assert by_name[f"{CAT}_5.json.gz"]["records"] == 2972  # the published file's review lines
