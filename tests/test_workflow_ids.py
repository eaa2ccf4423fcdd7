"""The semantic-ID targets end to end on the embedded demo: the ablation table for one category (the demo config's
tokenizers x 2 collision policies x the mm view x 2 poolings, each scored by a one-epoch seqrec finetuning) and
MQL4Rec's text + image ids.
One module-scoped Snakemake run (about 3 minutes on 2 CPU cores); nothing is mocked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmgenrec.io import read_json
from mmgenrec.quantize.run import load_index
from smkrun import REPO
from smkrun import smk as run_snakemake

CONFIG = REPO / "config" / "demo.yaml"
TARGETS = ("results/ablation_ids.csv", "results/demo_music/ids/mql4rec/index.json")
GRID = yaml.safe_load(CONFIG.read_text())["ablation"]

pytestmark = pytest.mark.slow


def smk(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # tiny models: two one-thread jobs at a time beat one two-thread job on 2 cores
    return run_snakemake(workdir, *args, "--set-threads", "ablation_score=1", "quantize_ablation=1",
                         "quantize_mql4rec=1", "embed_view=1", config=CONFIG)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ids")
    smk(workdir, *TARGETS)
    return workdir


def test_ablation_is_not_part_of_all(tmp_path):
    out = smk(tmp_path, "-n").stdout
    rules = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith(("rule ", "localrule "))}
    assert {"finetune", "quantize", "embed"} <= rules
    assert not rules & {"quantize_ablation", "ablation_score", "ablation_ids", "quantize_mql4rec"}


def test_ablation_table(run):
    table = pd.read_csv(run / "results" / "ablation_ids.csv")
    assert GRID["policies"] == ["none", "suffix"] and GRID["poolings"] == ["content", "prompt"]
    assert len(table) == len(GRID["tokenizers"]) * 4
    assert set(zip(table.tokenizer, table.policy, table.pooling)) == {
        (t, p, pool) for t in GRID["tokenizers"] for p in ("none", "suffix") for pool in ("content", "prompt")}
    assert set(table.category) == {"demo_music"} and set(table.view) == {"mm"} and set(table.split) == {"valid"}
    suffix, none = table[table.policy == "suffix"], table[table.policy == "none"]
    assert (suffix.levels == 5).all() and (none.levels == 4).all()
    assert (suffix.collision_rate_after == 0).all() and (suffix.merged_items == 0).all()
    assert (none.collision_rate_after == none.collision_rate_before).all()
    assert ((table.mean_utilisation > 0) & (table.mean_utilisation <= 1)).all()
    for col in ("HR@5", "HR@10", "NDCG@10"):
        assert table[col].between(0, 1).all()
    assert (table["HR@10"] >= table["HR@5"]).all() and (table.n_users > 300).all()
    # each row is the grid point's own files
    for row in table.itertuples():
        folder = run / "results" / "demo_music" / "ids" / "ablation" / f"{row.tokenizer}-{row.policy}-{row.view}-{row.pooling}"
        stats, metrics = read_json(folder / "stats.json"), read_json(folder / "seqrec_metrics.json")
        assert stats["tokenizer"] == row.tokenizer and stats["collision_policy"] == row.policy
        assert table.loc[row.Index, "HR@10"] == pytest.approx(metrics["HR@10"])
        after = stats["collisions_after"]
        assert row.merged_items == after["n_items"] - after["n_unique"]  # shared ids scored as one item
        assert stats["config"]["epochs"] == 100 if row.tokenizer == "rqvae" else "epochs" not in stats["config"]
        index = load_index(folder / "index.json", allow_collisions=row.policy == "none", codebook_size=32)
        assert len(index) == stats["n_items"]
        assert (folder / "training_curve.png").stat().st_size > 1000


def test_mql4rec_ids(run):
    ids = run / "results" / "demo_music" / "ids" / "mql4rec"
    index = load_index(ids / "index.json", codebook_size=32)
    assert all([t[1] for t in tokens] == list("abcdABCD") for tokens in index.values())
    stats = read_json(ids / "stats.json")
    assert stats["text"]["collisions_after"]["collision_rate"] == 0 == stats["image"]["collisions_after"]["collision_rate"]
    embed = run / "results" / "demo_music" / "embed"
    text_meta, image_meta = read_json(embed / "qwen_text.json"), read_json(embed / "qwen_image.json")
    assert text_meta["view"] == "text" and text_meta["items_with_image"] == 0
    assert image_meta["view"] == "image" and image_meta["items_with_image"] > 0
    assert image_meta["image_view_text_fallback"] == image_meta["items_text_only"]
