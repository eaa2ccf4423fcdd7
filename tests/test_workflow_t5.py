"""The T5 kinds in the real Snakefile (dry-runs only, a few seconds each): adding tiger / mql4rec plans only their
jobs (and the id sets and views they need), removing them removes them, and the summary reads MQL4Rec's
single-modality rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from smkrun import REPO, dry_run_jobs, smk

OURS = ("tiger", "mql4rec")


def _config(tmp_path: Path, keep: bool) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert set(OURS) <= set(cfg["methods"])
    if not keep:
        for name in OURS:
            del cfg["methods"][name]
        del cfg["idsets"]["image"]  # the text id set stays: LC-Rec uses it too
    path = tmp_path / f"{'with' if keep else 'without'}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _jobs(tmp_path: Path, keep: bool) -> tuple[Counter, list[dict]]:
    workdir = tmp_path / ("with" if keep else "without")
    workdir.mkdir()
    jobs = dry_run_jobs(workdir, config=_config(tmp_path, keep))
    return Counter((j["rule"], tuple(sorted(j["wildcards"].items()))) for j in jobs), jobs


def test_adding_the_t5_methods_plans_only_their_jobs(tmp_path):
    with_, jobs = _jobs(tmp_path, True)
    without, _ = _jobs(tmp_path, False)
    assert without - with_ == Counter()  # nothing disappears
    added = Counter(rule for rule, _ in (with_ - without).elements())
    cats = ("demo_music", "demo_games")
    assert added == {"t5_genrec": 2, "mql4rec": 2, "quantize": 2, "embed_view": 2}, added
    assert {dict(w)["idset"] for r, w in (with_ - without) if r == "quantize"} == {"image"}
    assert {(dict(w)["category"], dict(w)["method"]) for r, w in with_ if r == "t5_genrec"} == \
        {(c, "tiger") for c in cats}
    assert {(dict(w)["category"], dict(w)["method"]) for r, w in with_ if r == "mql4rec"} == \
        {(c, "mql4rec") for c in cats}
    assert "t5_genrec" not in {r for r, _ in without} and "mql4rec" not in {r for r, _ in without}


def test_summary_reads_the_single_modality_rows(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    out = smk(workdir, "-n", "results/summary.csv", config=_config(tmp_path, True)).stdout
    block = out[out.index("rule summary:"):]
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    for cat in ("demo_music", "demo_games"):
        for folder in ("mql4rec", "mql4rec_text", "mql4rec_image", "tiger"):
            assert f"results/{cat}/{folder}/seqrec_metrics.json" in inputs
            assert f"results/{cat}/{folder}/seqrec_topk.jsonl" in inputs


def test_instruments_config_plans_tiger_per_imported_idset_and_mql4rec(tmp_path, shared_data):
    # the config's ../shared/data paths are relative to a workdir beside shared/: point them at the real folder
    workdir = tmp_path / "w"
    cfg = yaml.safe_load((REPO / "config" / "instruments.yaml").read_text())
    inst = shared_data / "Instruments"
    cfg["categories"]["Instruments"]["prepared_dir"] = str(inst)
    for spec in cfg["idsets"].values():
        spec["import"] = str(inst / Path(spec["import"]).name)
    config = tmp_path / "instruments.yaml"
    config.write_text(yaml.safe_dump(cfg))
    workdir.mkdir()
    targets = [f"results/Instruments/{m}/seqrec_metrics.json" for m in cfg["methods"]]
    jobs = dry_run_jobs(workdir, *targets, config=config)
    planned = {(j["rule"], j["wildcards"].get("method") or j["wildcards"].get("idset")) for j in jobs}
    assert {m for r, m in planned if r == "t5_genrec"} == {"tiger_qwen7B", "tiger_llama_td", "tiger_lemb",
                                                           "tiger_vitemb"}
    assert {m for r, m in planned if r == "import_idset"} == {"qwen7B", "llama-td", "lemb", "vitemb"}
    assert ("mql4rec", "mql4rec") in planned and ("evaluate_popularity", "popularity") in planned
