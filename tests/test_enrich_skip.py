"""A real-source category without an enrichment file (``local``, no ``enrich.provided_file``) next to the demo:
the workflow plans every stage that does not need enrichment for it, skips the others, and says which (dry-run)."""

from __future__ import annotations

import gzip
import json

import yaml
from smkrun import REPO, jobs, smk

ENRICH_RULES = {"enrich", "enrich_checks", "enrich_utility", "textgen_ours", "textgen_baseline"}


def test_category_without_enrichment_runs_the_rest(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    review = {"overall": 5.0, "reviewerID": "A1", "asin": "B0001", "unixReviewTime": 1500000000}
    meta = {"asin": "B0001", "title": "A gift card", "imageURL": []}
    with gzip.open(raw / "Gift_Cards_5.json.gz", "wt") as f:
        f.write(json.dumps(review) + "\n")
    with gzip.open(raw / "meta_Gift_Cards.json.gz", "wt") as f:
        f.write(json.dumps(meta) + "\n")
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["categories"] = {"demo_music": config["categories"]["demo_music"],
                            "Gift_Cards": {"source": "local", "raw_dir": str(raw)}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "wd").mkdir()
    proc = smk(tmp_path / "wd", "-n", config=tmp_path / "c.yaml")
    plan = jobs(proc.stdout)
    by_cat = lambda cat: {j["rule"] for j in plan if j["wildcards"].get("category") == cat}  # noqa: E731
    gift, music = by_cat("Gift_Cards"), by_cat("demo_music")
    assert {"prepare", "embed", "quantize", "finetune", "evaluate_ours", "evaluate_popularity"} <= gift
    assert not gift & ENRICH_RULES, gift & ENRICH_RULES
    assert {"enrich", "enrich_checks", "enrich_utility", "textgen_ours"} <= music
    assert "results/Gift_Cards/enrich" not in proc.stdout  # no job reads or writes it (finetune's inputs included)
    assert ("category Gift_Cards: enrich.source is provided but there is no enrich.provided_file for source 'local': "
            "skipping enrich, enrich_checks, enrich_utility, text generation") in proc.stdout + proc.stderr
