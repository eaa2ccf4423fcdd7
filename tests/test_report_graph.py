"""The real study's graph: ``snakemake -n`` on config/config.yaml (nine categories x every method) plans every job
in seconds with no network, and the rule graph committed for README (workflow/report/rulegraph.svg) is current."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from smkrun import no_slurm_env

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "config" / "config.yaml"


def offline(cmd: list[str]) -> list[str]:
    """No network at all where possible (a fresh network namespace as root); proxies to a closed port otherwise."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--net", *cmd]
    return cmd


def run(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    env = {**no_slurm_env(), "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(offline([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args,
                                   "--configfile", str(CONFIG)]), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, wall, cpu


def test_real_config_dry_run_plans_every_job_offline(tmp_path):
    proc, wall, cpu = run(tmp_path, "-n")
    cfg = yaml.safe_load(CONFIG.read_text())
    n_cat, methods = len(cfg["categories"]), cfg["methods"]
    assert n_cat == 9
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    per_category = ["download_raw", "fetch_images", "prepare", "embed", "report_category",
                    "enrich", "enrich_checks", "enrich_utility", "evaluate_popularity", "evaluate_i2i"]
    for rule in per_category:
        assert int(counts[rule]) == n_cat, (rule, counts)
    generative = [m for m in methods if m.startswith("ours")]
    assert int(counts["evaluate_ours"]) == int(counts["textgen_ours"]) == n_cat * len(generative)
    assert int(counts["finetune"]) == int(counts["finetune_multistage"]) == int(counts["merge_adapters"]) == n_cat
    assert int(counts["textgen_baseline"]) == n_cat * len(cfg["evaluate"]["textgen"]["baselines"])
    assert counts["download_model"] == counts["summary"] == "1"
    # one quantize job per category and id set a method uses (rqvae; the text-LLM id set; MQL4Rec's image one)
    used = {m.get("idset", "rqvae") for m in methods.values() if m["kind"] in ("vlm_genrec", "lm_genrec", "t5_genrec")}
    used |= {s for m in methods.values() if m["kind"] == "mql4rec" for s in m["idsets"].values()}
    assert int(counts["quantize"]) == n_cat * len(used)
    lm = [m for m, spec in methods.items() if spec["kind"] == "lm_genrec"]
    assert int(counts["finetune_lm"]) == int(counts["evaluate_lm"]) == n_cat * len(lm)
    assert int(counts["embed_lm_text"]) == n_cat and counts["download_text_lm"] == "1"
    assert not list(tmp_path.glob("resources/*")), "a dry-run must not create files"
    print(f"dry-run: {int(counts['total'])} jobs, {wall:.1f} s wall, {cpu:.1f} s CPU")
    assert cpu < 20, f"dry-run used {cpu:.1f} s of CPU"  # CPU time: independent of the load on shared CI runners
    assert wall < 120


def test_committed_rule_graph_is_current(tmp_path):
    proc, _, _ = run(tmp_path, "--rulegraph")
    rules = set(re.findall(r'label = "(\w+)"', proc.stdout))
    assert {"download_raw", "embed", "finetune", "evaluate_ours", "summary", "report_category"} <= rules
    svg = (REPO / "workflow" / "report" / "rulegraph.svg").read_text()
    drawn = set(re.findall(r">(\w+)</text>", svg))
    assert drawn == rules, f"re-draw workflow/report/rulegraph.svg (make rulegraph): {sorted(drawn ^ rules)}"
