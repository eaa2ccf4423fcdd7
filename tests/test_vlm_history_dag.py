"""Dry-runs: the image-history methods plan only their own jobs, on the categories that list them."""

from __future__ import annotations

from collections import Counter

import yaml

from smkrun import REPO, dry_run_jobs

DEMO = REPO / "config" / "demo.yaml"


def planned(tmp_path, edit=None):
    cfg = yaml.safe_load(DEMO.read_text())
    if edit:
        edit(cfg)
    for cat in cfg["categories"].values():
        if "methods" in cat:
            cat["methods"] = [m for m in cat["methods"] if m in cfg["methods"]]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Counter((j["rule"], j["wildcards"].get("category"), j["wildcards"].get("method"))
                   for j in dry_run_jobs(tmp_path, config=path))


def test_image_history_methods_plan_only_their_jobs(tmp_path):
    full = planned(tmp_path)
    # the demo: unimp and the H&M VLM on the H&M-format category only; its data comes from synthesize_hm
    assert full[("train_unimp", "demo_hm", "unimp")] == 1 and full[("train_vlm_candidates", "demo_hm", "hm_vlm")] == 1
    assert sum(n for (rule, _, _), n in full.items() if rule in ("train_unimp", "train_vlm_candidates")) == 2
    assert full[("synthesize_hm", "demo_hm", None)] == 1 and full[("synthesize_raw", "demo_hm", None)] == 0
    without = planned(tmp_path, lambda c: [c["methods"].pop(m) for m in ("unimp", "hm_vlm")])
    assert full - without == Counter({("train_unimp", "demo_hm", "unimp"): 1,
                                      ("train_vlm_candidates", "demo_hm", "hm_vlm"): 1})
    assert without - full == Counter()
