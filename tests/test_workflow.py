"""The real Snakemake workflow, end to end on the embedded default, in a scratch working directory.

The session's demo run (``demo`` in conftest) does the work; the tests check its files and metrics, and use it
(or a copy, where a test changes files) to check what a rerun recomputes. Nothing is mocked: ``snakemake`` runs
as a subprocess.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from smkrun import REPO, dry_run_jobs, smk

CATS = ("demo_music", "demo_games")

pytestmark = pytest.mark.slow


def planned_jobs(workdir: Path, config: Path, *targets: str) -> dict[str, set[str]]:
    """rule -> set of categories a dry-run would run."""
    jobs: dict[str, set[str]] = {}
    for job in dry_run_jobs(workdir, *targets, config=config):
        jobs.setdefault(job["rule"], set()).update(
            [job["wildcards"]["category"]] if "category" in job["wildcards"] else [])
    return jobs


def uses_merged_adapter(rule: str, wildcards: dict[str, str]) -> bool:
    """Jobs downstream of ``ours_merged``, which averages every category's adapter (so depends on all of them)."""
    return (rule == "merge_adapters" or wildcards.get("method") == "ours_merged"
            or rule in ("evaluate_i2i", "report_category"))  # these read every ours* model of their category


@pytest.fixture(scope="module")
def run(demo):
    """The session's demo run: one category by its target file, then everything."""
    return demo.workdir, demo.config, demo.after_one, demo.other_raw_existed


def test_one_category_target_runs_only_that_category(run):
    workdir, _, after_one, other_raw_existed = run
    names = {p.relative_to(workdir).parts[1] for p in after_one}
    assert names == {"demo_music"}
    assert not other_raw_existed


def test_full_run_does_not_recompute_the_finished_category(run):
    workdir, _, after_one, _ = run
    for path, mtime in after_one.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was recomputed"


def test_outputs_and_metrics(run):
    workdir, _, _, _ = run
    rows = {}
    for cat in CATS:
        prep = workdir / "results" / cat / "prepared"
        for suffix in ("inter.json", "item.json", "item2id", "user2id", "train.inter", "valid.inter",
                       "test.inter", "stats.json"):
            assert (prep / f"{cat}.{suffix}").stat().st_size > 0
        inter = json.loads((prep / f"{cat}.inter.json").read_text())
        items = json.loads((prep / f"{cat}.item.json").read_text())
        emb = np.load(workdir / "results" / cat / "embed" / "qwen_mm.npy")
        assert emb.shape[0] == len(items) and emb.dtype.name == "float32"
        index = json.loads((workdir / "results" / cat / "ids" / "rqvae" / "index.json").read_text())
        assert sorted(map(int, index)) == list(range(len(items)))
        assert len({tuple(v) for v in index.values()}) == len(index)  # collision-free
        assert all(len(v) == 4 and v[0].startswith("<a_") and v[3].startswith("<d_") for v in index.values())
        qstats = json.loads((workdir / "results" / cat / "ids" / "rqvae" / "stats.json").read_text())
        assert qstats["collisions_after"]["collision_rate"] == 0.0

        for method in ("ours", "ours_multistage", "ours_merged", "popularity"):
            m = json.loads((workdir / "results" / cat / method / "seqrec_metrics.json").read_text())
            assert m["n_users"] == len(inter)
            assert m["invalid_beam_fraction"] == 0.0
            assert 0 <= m["NDCG@10"] <= m["HR@10"] <= 1 and m["HR@1"] <= m["HR@5"] <= m["HR@10"]
            lines = (workdir / "results" / cat / method / "seqrec_topk.jsonl").read_text().splitlines()
            recs = [json.loads(line) for line in lines]
            assert sorted(r["user"] for r in recs) == sorted(inter)  # every test user exactly once
            for r in recs:
                assert r["target"] == inter[r["user"]][-1]
                assert len(r["topk"]) == 10 == len(set(r["topk"]))
                assert all(0 <= i < len(items) for i in r["topk"])
            hr10 = sum(r["target"] in r["topk"] for r in recs) / len(recs)
            assert abs(hr10 - m["HR@10"]) < 1e-9
            rows[(cat, method)] = m
        log = json.loads((workdir / "results" / cat / "ours" / "model" / "train_log.json").read_text())
        tail = [point["loss"] for point in log["curve"][-5:]]  # multitask: the text tasks keep some entropy
        assert sum(tail) / len(tail) < 0.6 * log["first_loss"]
        # the learnable structure is learned: clearly better than popularity
        assert rows[(cat, "ours")]["HR@10"] > 1.5 * rows[(cat, "popularity")]["HR@10"]
        assert rows[(cat, "ours")]["NDCG@10"] > rows[(cat, "popularity")]["NDCG@10"]
        for variant in ("ours_multistage", "ours_merged"):  # trained variants beat popularity too
            assert rows[(cat, variant)]["HR@10"] > rows[(cat, "popularity")]["HR@10"]

    summary = pd.read_csv(workdir / "results" / "summary.csv")
    summary = summary[summary.task == "seqrec"]
    # every category x every method that runs on it (demo_hm lists its own; MQL4Rec adds its single-modality rows)
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    expected = set()
    for cat, spec in cfg["categories"].items():
        only = spec.get("methods")
        names = [m for m in cfg["methods"] if only is None or (m in only if isinstance(only, list)
                                                               else m not in only["exclude"])]
        for m in names:
            expected |= {(cat, m)} | ({(cat, f"{m}_text"), (cat, f"{m}_image")}
                                      if cfg["methods"][m]["kind"] == "mql4rec" else set())
    assert set(rows) <= expected and set(zip(summary.category, summary.method)) == expected
    value = summary.query("category == 'demo_music' and method == 'ours' and metric == 'HR@10'").value.item()
    assert value == pytest.approx(rows[("demo_music", "ours")]["HR@10"])
    md = (workdir / "results" / "summary.md").read_text()
    assert "| demo_music | ours" in md and "## Data after filtering" in md
    for rule, job in (("prepare", "demo_music"), ("embed", "demo_music"), ("quantize", "demo_music.rqvae"),
                      ("finetune", "demo_music.ours"), ("evaluate_ours", "demo_music.ours")):
        assert (workdir / "benchmarks" / rule / f"{job}.tsv").is_file()
        assert (workdir / "logs" / rule / f"{job}.log").is_file()


def test_rerun_is_a_no_op(run):
    workdir, config, _, _ = run
    proc = smk(workdir, config=config)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_raw_file_reruns_only_its_category(demo, tmp_path):
    workdir, config = demo.copy(tmp_path / "wd"), demo.config
    reviews = workdir / "resources" / "raw" / "demo_games" / "demo_games_5.json.gz"
    lines = gzip.open(reviews, "rt").read().splitlines()
    with gzip.open(reviews, "wt") as f:  # a new version of the file: one review fewer
        f.write("\n".join(lines[1:]) + "\n")
    jobs = dry_run_jobs(workdir, config=config)
    rules = {job["rule"] for job in jobs}
    assert {"prepare", "embed", "quantize", "finetune", "evaluate_ours", "evaluate_popularity"} <= rules
    assert "synthesize_raw" not in rules and "build_tiny_model" not in rules
    others = [(job["rule"], job["wildcards"]) for job in jobs if job["wildcards"].get("category") == "demo_music"]
    # demo_music reruns only what reads the merged adapter, which averages both categories' adapters
    assert others and all(uses_merged_adapter(rule, wc) for rule, wc in others), others
    assert ("merge_adapters", {"category": "demo_music", "method": "ours_merged"}) in others


def test_changed_category_parameter_reruns_only_that_evaluation(run, tmp_path):
    workdir, config, _, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["categories"]["demo_music"]["evaluate"] = {"num_beams": 12}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(workdir, changed, "results/demo_music/ours/seqrec_metrics.json")
    assert set(jobs) == {"evaluate_ours"} and jobs["evaluate_ours"] == {"demo_music"}


def test_reordered_categories_rerun_nothing(run, tmp_path):
    """The same categories listed in another order (``yaml.safe_dump`` sorts them) are the same study."""
    workdir, config, _, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["categories"] = dict(reversed(list(cfg["categories"].items())))
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert list(yaml.safe_load(reordered.read_text())["categories"]) == list(reversed(list(
        yaml.safe_load(config.read_text())["categories"])))
    assert planned_jobs(workdir, reordered) == {}


def test_partial_category_override_keeps_the_other_top_level_values(run, tmp_path):
    """A per-category section naming one key changes that key only: schema defaults never fill the override."""
    workdir, config, _, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["categories"]["demo_music"]["finetune"] = {"lr": cfg["finetune"]["lr"]}  # same value as the top level
    cfg["categories"]["demo_music"]["evaluate"] = {"top_k": cfg["evaluate"]["top_k"]}
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(cfg))
    targets = [f"results/demo_music/{m}/seqrec_metrics.json" for m in ("ours", "ours_multistage", "popularity")]
    assert planned_jobs(workdir, same, *targets) == {}


def test_dry_run_lists_the_whole_graph(tmp_path):
    proc = smk(tmp_path, "-n", config=REPO / "config" / "demo.yaml")
    text = proc.stdout
    for rule in ("synthesize_raw", "prepare", "build_tiny_model", "embed", "quantize", "finetune",
                 "evaluate_ours", "evaluate_popularity", "summary", "all"):
        assert f"rule {rule}:" in text or f"localrule {rule}:" in text
    assert not (tmp_path / "results").exists()  # nothing executed


def _local_category(tmp_path: Path, reviews_bytes: bytes) -> Path:
    """A config whose only category reads raw files from a local folder (as the real study does)."""
    from mmgenrec.data.synthetic import generate_category

    raw = tmp_path / "raw"
    generate_category(raw, "bad", n_groups=3, items_per_group=8, n_users=60, seed=5)
    if reviews_bytes is not None:
        (raw / "bad_5.json.gz").write_bytes(reviews_bytes(raw / "bad_5.json.gz"))
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["categories"] = {"bad": {"source": "local", "raw_dir": str(raw)}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.read_bytes()[: len(p.read_bytes()) // 2], r"bad_5.json.gz: corrupt or truncated gzip"),
    (lambda p: gzip.compress(b'{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1}\n{oops\n'),
     r"bad_5.json.gz: line 2: not valid JSON"),
    (lambda p: gzip.compress(b'{"reviewerID": "A1", "unixReviewTime": 1}\n'), r"line 1: field 'asin'"),
])
def test_malformed_raw_input_fails_clearly_and_leaves_no_output(tmp_path, damage, message):
    config = _local_category(tmp_path, damage)
    target = "results/bad/prepared/bad.inter.json"
    proc = smk(tmp_path, target, config=config, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "prepare" / "bad.log").read_text()
    assert re.search(message, log), log[-2000:]
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]  # no half-written file


def test_orphans_and_missing_images_are_counted_not_fatal(tmp_path):
    config = _local_category(tmp_path, None)
    smk(tmp_path, "results/bad/prepared/bad.inter.json", config=config)
    stats = json.loads((tmp_path / "results" / "bad" / "prepared" / "bad.stats.json").read_text())
    assert stats["counts"]["reviews_dropped_orphan"] >= 5
    assert stats["counts"]["items_without_image"] >= 1


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["quantize"].update(levls=4), "levls"),
    (lambda c: c["finetune"].update(epochs="four"), "four"),
    (lambda c: c["categories"]["demo_music"].update(source="s3"), "s3"),
    (lambda c: c["categories"]["demo_music"].update(source="local"), "raw_dir"),
])
def test_config_schema_errors_are_clear(tmp_path, edit, message):
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    edit(cfg)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", config=path, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert "validation" in (proc.stdout + proc.stderr).lower() or "schema" in (proc.stdout + proc.stderr).lower()


def test_real_study_config_dry_runs_fast_without_network(tmp_path):
    """Nine categories, every rule: the graph builds from the config alone (downloads are jobs, not look-ups)."""
    t0 = time.monotonic()
    proc = smk(tmp_path, "-n", config=REPO / "config" / "config.yaml")
    seconds = time.monotonic() - t0
    jobs = planned_jobs(tmp_path, REPO / "config" / "config.yaml")
    assert len(jobs["download_raw"]) == len(jobs["prepare"]) == len(jobs["evaluate_ours"]) == 9
    assert "download_model" in jobs
    assert "Musical_Instruments" in jobs["fetch_images"]
    assert seconds < 60, proc.stdout[-500:]  # a few seconds in practice; generous for a loaded CI machine
