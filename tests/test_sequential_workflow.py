"""Kind sequential in the workflow (dry-runs only, a few seconds each): a sequential method plans its one job per
category with its candidate files; adding or removing one changes only its own jobs."""

from __future__ import annotations

import yaml

from smkrun import REPO, dry_run_jobs, smk


def _jobs(workdir, config) -> set[tuple]:
    return {(j["rule"], tuple(sorted(j["wildcards"].items()))) for j in dry_run_jobs(workdir, config=config)}


def _config(tmp_path, name, edit):
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    edit(cfg)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_adding_or_removing_a_sequential_method_plans_only_its_jobs(tmp_path):
    full = _config(tmp_path, "full", lambda c: None)
    without = _config(tmp_path, "without", lambda c: c["methods"].pop("gru4rec"))
    cats = [c for c, spec in yaml.safe_load(full.read_text())["categories"].items()  # where gru4rec runs
            if not isinstance(spec.get("methods"), list) or "gru4rec" in spec["methods"]]
    a, b = _jobs(tmp_path, full), _jobs(tmp_path, without)
    assert a - b == {("sequential", (("category", c), ("method", "gru4rec"))) for c in cats}
    assert b - a == set()
    # the demo's four sequential methods, one job each per category
    seq = {dict(w)["method"] for r, w in a if r == "sequential"}
    assert seq == {"sasrec", "bert4rec", "gru4rec", "lrurec"}


def test_candidate_files_are_the_sequential_rules_outputs(tmp_path):
    config = _config(tmp_path, "c", lambda c: None)
    target = "results/demo_music/candidates/lrurec/test.jsonl"
    jobs = dry_run_jobs(tmp_path, target, config=config)
    assert [j["wildcards"] for j in jobs if j["rule"] == "sequential"] == [{"category": "demo_music",
                                                                            "method": "lrurec"}]
    proc = smk(tmp_path, "-n", "results/demo_music/candidates/popularity/test.jsonl", config=config, check=False)
    assert proc.returncode != 0  # popularity is no retriever: no rule makes its candidates
