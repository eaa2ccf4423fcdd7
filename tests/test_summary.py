"""Summary: long table (CSV = Parquet), Markdown with bootstrap CIs / text generation / I2I, plots."""

import json

import numpy as np
import pandas as pd
import pytest

from mmgenrec.evaluate.metrics import paired_bootstrap
from mmgenrec.evaluate.summary import summarize
from mmgenrec.io import InputError


def _method(root, cat, method, hr10, users=("u1", "u2", "u3", "u4")):
    d = root / cat / method
    d.mkdir(parents=True)
    metrics = {"HR@1": 0.1, "HR@5": 0.2, "HR@10": float(np.mean(hr10)), "NDCG@5": 0.1, "NDCG@10": float(np.mean(hr10)) / 2,
               "MRR": 0.1, "n_users": len(users), "invalid_beam_fraction": 0.0, "template_ids": ["0", "1"],
               "template_stats": {"HR@10": {"mean": 0.5, "min": 0.25, "max": 0.75}}}
    (d / "seqrec_metrics.json").write_text(json.dumps(metrics))
    with open(d / "seqrec_topk.jsonl", "w") as f:
        for u, h in zip(users, hr10):
            f.write(json.dumps({"user": u, "target": 1, "topk": [1], "HR@10": h, "NDCG@10": h / 2}) + "\n")
    return d


def test_summary_tables_bootstrap_and_plots(tmp_path):
    res = tmp_path / "results"
    a = _method(res, "cat1", "ours", [1.0, 1.0, 0.0, 1.0])
    b = _method(res, "cat1", "popularity", [0.0, 1.0, 0.0, 0.0], users=("u4", "u3", "u2", "u1"))  # order differs
    (a / "textgen_metrics.json").write_text(json.dumps({"BLEU": 12.5, "chrF": 30.0, "ROUGE-1": 0.4, "ROUGE-2": 0.1,
                                                         "ROUGE-L": 0.3, "n": 8}))
    (res / "cat1" / "i2i_metrics.json").write_text(json.dumps(
        {"sources": {"raw": {"Hit@1": 0.1, "Hit@5": 0.3, "Hit@10": 0.5, "NDCG@10": 0.25, "n_queries": 9}}}))
    files = [a / "seqrec_metrics.json", b / "seqrec_metrics.json"]
    long = summarize(files, tmp_path / "s.csv", tmp_path / "s.md", parquet_path=tmp_path / "s.parquet",
                     plots_dir=tmp_path / "plots", topk_files=[a / "seqrec_topk.jsonl", b / "seqrec_topk.jsonl"],
                     textgen_files=[a / "textgen_metrics.json"], i2i_files=[res / "cat1" / "i2i_metrics.json"],
                     n_boot=300, seed=1)
    csv = pd.read_csv(tmp_path / "s.csv")
    pq = pd.read_parquet(tmp_path / "s.parquet")
    assert list(csv.columns) == ["task", "category", "method", "metric", "value"]
    pd.testing.assert_frame_equal(csv, pq)
    assert set(long.task) == {"seqrec", "bootstrap", "textgen", "i2i"}
    get = lambda task, method, metric: long.query(  # noqa: E731
        "task == @task and method == @method and metric == @metric").value.item()
    assert get("seqrec", "ours", "HR@10") == 0.75
    assert get("seqrec", "ours", "HR@10 template min") == 0.25
    # users matched by id: ours - popularity per user = u1: 1-0, u2: 1-0, u3: 0-1, u4: 1-0 -> mean 0.5
    assert get("bootstrap", "ours vs popularity", "HR@10 diff") == pytest.approx(0.5)
    ref = paired_bootstrap([1, 1, 0, 1], [0, 0, 1, 0], n_boot=300, seed=1)
    assert get("bootstrap", "ours vs popularity", "HR@10 ci_low") == pytest.approx(ref["ci_low"])
    assert get("bootstrap", "ours vs popularity", "HR@10 ci_high") == pytest.approx(ref["ci_high"])
    assert get("textgen", "ours", "BLEU") == 12.5 and get("i2i", "raw", "Hit@10") == 0.5
    md = (tmp_path / "s.md").read_text()
    assert "| cat1       | ours" in md and "Paired bootstrap" in md and "95% CI" in md
    assert "Text generation" in md and "Item-to-item" in md
    for name in ("seqrec_hr10.png", "seqrec_ndcg10.png", "textgen_rougeL.png", "i2i_hit10.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_needs_the_same_users(tmp_path):
    a = _method(tmp_path, "c", "ours", [1.0, 0.0])
    b = _method(tmp_path, "c", "popularity", [1.0, 0.0], users=("u1", "u9"))
    with pytest.raises(InputError, match="different users"):
        summarize([a / "seqrec_metrics.json"], tmp_path / "s.csv", tmp_path / "s.md",
                  topk_files=[a / "seqrec_topk.jsonl", b / "seqrec_topk.jsonl"])


def test_summary_reports_enrichment_checks_and_verdict(tmp_path):
    res = tmp_path / "results"
    a = _method(res, "cat1", "ours", [1.0, 0.0, 1.0, 1.0])
    enrich = res / "cat1" / "enrich"
    enrich.mkdir()
    (enrich / "checks.json").write_text(json.dumps({"ok": False, "checks": {
        "coverage": {"value": 0.95, "ok": True}, "faithfulness": {"value": 0.4, "ok": False}}}))
    stat = lambda m: {"mean": m, "std": 0.01}  # noqa: E731
    (enrich / "utility.json").write_text(json.dumps({
        "verdict": "helps", "metric": "ndcg@20",
        "arms": {"original": {"recall@20": stat(0.28), "ndcg@20": stat(0.10), "valid_ndcg@20": stat(0.1)},
                 "enriched": {"recall@20": stat(0.32), "ndcg@20": stat(0.12), "valid_ndcg@20": stat(0.1)}},
        "comparison": {"ndcg@20": {"relative_change": 0.2, "ci": [0.05, 0.31]},
                       "recall@20": {"relative_change": 0.14, "ci": [-0.01, 0.3]}},
        "aa": {"result": {"verdict": "no_difference", "relative_gain": 0.03, "ci": [-0.1, 0.15]},
               "draws": 10, "false_positive_rate": 0.1, "alpha": 0.05}}))
    long = summarize([a / "seqrec_metrics.json"], tmp_path / "s.csv", tmp_path / "s.md",
                     enrich_checks=[enrich / "checks.json"], enrich_utility=[enrich / "utility.json"],
                     enrich_skipped={"Gift_Cards": "no enrich.provided_file"})
    util = long[long.task == "enrich_utility"]
    assert util.query("method == 'vbpr_enriched_text' and metric == 'ndcg@20'").value.item() == 0.12
    assert util.query("method == 'vbpr_original_text' and metric == 'recall@20'").value.item() == 0.28
    assert not util.metric.str.startswith("valid_").any()
    assert long.query("task == 'enrich_checks' and metric == 'faithfulness'").value.item() == 0.4
    md = (tmp_path / "s.md").read_text()
    section = md.split("## Enriched item text")[1]
    assert "| cat1 " in section and "helps" in section and "False" in section and "0.4000" in section
    diff = util[util.method == "enriched - original"].set_index("metric").value
    assert diff["ndcg@20 relative gain"] == 0.2 and diff["ndcg@20 ci low"] == 0.05 and diff["recall@20 ci high"] == 0.3
    aa = util[util.method == "A/A original - original"].set_index("metric").value
    assert aa["ndcg@20 false-positive rate"] == 0.1 and aa["ndcg@20 relative gain"] == 0.03
    cat1 = next(line for line in section.splitlines() if line.startswith("| cat1 "))
    assert "no_difference (false positives 10% of 10 at alpha 0.05)" in cat1  # the A/A next to the verdict
    gift = next(line for line in section.splitlines() if line.startswith("| Gift_Cards "))
    assert "skipped (no enrich.provided_file)" in gift
