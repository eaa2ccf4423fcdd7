"""The evaluation rules end to end on the session's demo run (``demo`` in conftest): seqrec for every ours*
method, popularity, text generation (finetuned models, untuned base VLM, tiny BLIP-2 / InstructBLIP built by
their rules), I2I, summary (CSV = Parquet, bootstrap CIs, plots). Nothing mocked: snakemake runs as a
subprocess."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from evalcheck import i2i_scores, read_generations, text_scores
from smkrun import dry_run_jobs, smk

CAT = "demo_music"
OURS = ("ours", "ours_multistage", "ours_merged")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(demo):
    return demo.workdir, demo.config, yaml.safe_load(demo.config.read_text())


def test_seqrec_and_i2i_outputs(run):
    workdir, _, _ = run
    res = workdir / "results" / CAT
    ours = json.loads((res / "ours" / "seqrec_metrics.json").read_text())
    pop = json.loads((res / "popularity" / "seqrec_metrics.json").read_text())
    assert ours["invalid_beam_fraction"] == 0.0 and ours["collision_target_fraction"] == 0.0
    assert ours["template_ids"] == ["0"] and ours["template_stats"]["HR@10"]["min"] == ours["HR@10"]
    assert ours["n_users"] == pop["n_users"] > 0 and ours["users_per_second"] > 0
    i2i = json.loads((res / "i2i_metrics.json").read_text())
    assert set(i2i["sources"]) == {"raw", "reconstruction", *(f"tokens:{m}" for m in OURS)}
    for m in i2i["sources"].values():
        assert m["n_queries"] == i2i["n_labelled"] > 0
    # raw and reconstructed vectors scored again by brute force (tests/evalcheck.py), not by the evaluate code
    train = [seq[:-2] for seq in json.loads((res / "prepared" / f"{CAT}.inter.json").read_text()).values()]
    view = yaml.safe_load(run[1].read_text())["quantize"]["view"]
    vectors = {"raw": res / "embed" / f"qwen_{view}.npy",
               "reconstruction": res / "ids" / "rqvae" / "reconstruction.npy"}
    for source, npy in vectors.items():
        expected = i2i_scores(np.load(npy), train)
        saved = i2i["sources"][source]
        assert saved["n_queries"] == expected["n_queries"]
        for key in ("Hit@1", "Hit@5", "Hit@10", "NDCG@10"):
            assert saved[key] == pytest.approx(expected[key], abs=2 / expected["n_queries"]), (source, key)


def test_textgen_outputs(run):
    workdir, _, cfg = run
    res = workdir / "results" / CAT
    enriched = json.loads((res / "enrich" / "enriched.json").read_text())
    heldout = [i for i in json.loads((res / "enrich" / "split.json").read_text())["heldout"] if i in enriched]
    n = cfg["evaluate"]["textgen"]["max_items"]
    for system in (*OURS, "base_vlm", "blip2", "instructblip"):
        saved = json.loads((res / system / "textgen_metrics.json").read_text())
        gens = [json.loads(line) for line in (res / system / "textgen_generations.jsonl").read_text().splitlines()]
        assert [g["item"] for g in gens] == heldout[:n] and saved["n"] == len(gens) > 0
        expected = text_scores(read_generations(res / system / "textgen_generations.jsonl"))  # tests/evalcheck.py
        assert saved["ROUGE-L"] == pytest.approx(expected["ROUGE-L"])
        assert saved["BLEU"] == pytest.approx(expected["BLEU"])
    for kind in ("blip2", "instructblip"):
        assert (workdir / cfg["evaluate"]["textgen"]["baselines"][kind]["path"] / "config.json").is_file()


def test_summary_files(run):
    workdir, _, _ = run
    csv = pd.read_csv(workdir / "results" / "summary.csv")
    pd.testing.assert_frame_equal(csv, pd.read_parquet(workdir / "results" / "summary.parquet"))
    assert set(csv.task) == {"seqrec", "bootstrap", "textgen", "i2i", "enrich_checks", "enrich_utility", "ranker"}
    get = lambda task, method, metric: csv.query(  # noqa: E731
        "task == @task and category == @CAT and method == @method and metric == @metric").value.item()
    diff = get("bootstrap", "ours vs popularity", "HR@10 diff")
    assert diff == pytest.approx(get("seqrec", "ours", "HR@10") - get("seqrec", "popularity", "HR@10"), abs=1e-9)
    assert get("bootstrap", "ours vs popularity", "HR@10 ci_low") <= diff <= get(
        "bootstrap", "ours vs popularity", "HR@10 ci_high")
    assert set(csv[csv.task == "textgen"].method) == {*OURS, "base_vlm", "blip2", "instructblip"}
    assert set(csv[csv.task == "bootstrap"].category) == set(yaml.safe_load(run[1].read_text())["categories"])
    md = (workdir / "results" / "summary.md").read_text()
    assert "Paired bootstrap" in md and "Text generation" in md and "Item-to-item" in md
    assert "## Enriched item text" in md and any(v in md for v in ("helps", "no_difference", "hurts"))
    assert (workdir / "results" / "plots" / "seqrec_hr10.png").stat().st_size > 1000


def test_rerun_no_op_and_bootstrap_setting_reruns_only_summary(run, tmp_path):
    workdir, config, cfg = run
    proc = smk(workdir, "results/summary.csv", config=config)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    cfg = json.loads(json.dumps(cfg))
    cfg["evaluate"]["n_boot"] = 50
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = dry_run_jobs(workdir, "results/summary.csv", config=changed)
    assert {job["rule"] for job in jobs} == {"summary"}, jobs
