"""The demo DAG through profiles/slurm on a real (local, single-node) SLURM cluster with fake GPUs.

``tests/cluster/slurm_up.sh`` installs slurm-wlm + munge when missing and starts slurmctld/slurmd/munged; the
test stops them again only if it started them. One category (plus summary) runs twice: locally (the reference)
and through ``snakemake --profile profiles/slurm``, while a watcher polls ``squeue`` (no accounting daemon, so no
sacct) and cancels the first ``finetune`` job with ``scancel`` once it runs. Checks: every rule became a SLURM job
(squeue comments and the plugin's logs), GPU rules asked for a GPU in the gpu partition and saw
``CUDA_VISIBLE_DEVICES``, CPU rules did neither, the cancelled job came back with twice the time limit, and the
results equal the local run's.

Skipped with the reason where the machine cannot host the cluster (not root, no apt, a foreign SLURM).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from smkrun import REPO, SNAKEMAKE, gpu_rules, jobs, smk

UP = REPO / "tests" / "cluster" / "slurm_up.sh"
CAT = "demo_music"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def env() -> dict[str, str]:
    """Jobs run ``python3 -m snakemake`` from PATH (sbatch --export=ALL): put this interpreter's bin first."""
    out = dict(os.environ)
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    out.pop("CUDA_VISIBLE_DEVICES", None)
    return out


@pytest.fixture(scope="module")
def cluster():
    if sys.platform != "linux":
        pytest.skip("the local SLURM cluster needs Linux")
    was_up = subprocess.run(["bash", str(UP), "status"], capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(UP), "start"], capture_output=True, text=True)
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    yield
    if not was_up:
        subprocess.run(["bash", str(UP), "stop"], check=True)


def small_config(tmp: Path) -> Path:
    """demo.yaml cut to one smaller category and five methods; GPU rules ask for one GPU; one thread per job
    (2-core node)."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cat = cfg["categories"][CAT]
    cat["synthetic"]["n_users"] = 200
    cat.pop("methods", None)
    cfg["categories"] = {CAT: cat}
    # a subset of the methods (the guide allows it): the VLM family, popularity and one sequential model keep every
    # kind of rule the profile must place (GPU and CPU) within the test's time budget
    cfg["methods"] = {m: cfg["methods"][m] for m in ("ours", "ours_multistage", "ours_merged", "popularity", "sasrec")}
    cfg["finetune"]["epochs"] = 2
    cfg["resources"] = {
        "embed": {"threads": 1, "gpu": 1, "mem_mb": 2000, "runtime": 10},
        "finetune": {"threads": 1, "gpu": 1, "mem_mb": 2000, "runtime": 10},
        "evaluate": {"threads": 1, "gpu": 1, "mem_mb": 2000, "runtime": 10},
        "quantize": {"threads": 1, "mem_mb": 2000, "runtime": 10},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Watcher(threading.Thread):
    """Polls ``squeue --states=all`` (finished jobs stay listed for MinJobAge) and scancels the first finetune job
    a few seconds after it starts running."""

    FIELDS = "JobID:20,Partition:12,TimeLimit:14,State:16,tres-per-job:30,Comment:300"

    def __init__(self):
        super().__init__(daemon=True)
        self.jobs: dict[str, dict] = {}
        self.poll()
        self.before = {int(j) for j in self.jobs}  # jobs of earlier runs (still listed for MinJobAge)
        self.jobs = {}
        self.killed: str | None = None
        self.stop = threading.Event()
        self.since = {}

    def poll(self):
        out = subprocess.run(["squeue", "--states=all", "-h", "-O", self.FIELDS], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 6:
                continue
            job_id, partition, limit, state, tres, comment = parts
            if int(job_id) in getattr(self, "before", ()):
                continue
            self.jobs[job_id] = {"partition": partition, "limit": limit, "state": state, "tres": tres,
                                 "comment": comment.strip()}

    def run(self):
        while not self.stop.is_set():
            self.poll()
            if self.killed is None:
                for job_id, job in self.jobs.items():
                    if rule_of(job["comment"]) == "finetune" and job["state"] == "RUNNING":
                        started = self.since.setdefault(job_id, time.time())
                        if time.time() - started > 4:
                            subprocess.run(["scancel", job_id], check=True)
                            self.killed = job_id
            time.sleep(0.25)
        self.poll()


def rule_of(comment: str) -> str:
    """The rule of a job from the comment the plugin gives it (``rule_<rule>[_wildcards_<...>]``); '' if none."""
    match = re.match(r"rule_(.+?)(_wildcards_.*)?$", comment)
    return match.group(1) if match else ""


def minutes(limit: str) -> int:
    """squeue's time limit ``[D-]HH:MM:SS`` or ``MM:SS`` -> minutes."""
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1]


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm")
    config = small_config(tmp)
    local, slurm = tmp / "local", tmp / "slurm"
    local.mkdir(), slurm.mkdir()
    local_jobs = jobs(smk(local, config=config, env=env()).stderr)
    gpu = gpu_rules(local, config)

    watcher = Watcher()
    watcher.start()
    t0 = time.time()
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(slurm), "--profile", str(REPO / "profiles" / "slurm"),
         "--slurm-init-seconds-before-status-checks", "3", "--configfile", str(config)],
        capture_output=True, text=True, env=env(), cwd=slurm, timeout=1500)
    watcher.stop.set()
    watcher.join()
    assert proc.returncode == 0, proc.stderr[-8000:]
    print(f"SLURM run: {time.time() - t0:.0f} s, {len(watcher.jobs)} jobs")
    return local, slurm, watcher, proc.stderr, local_jobs, gpu


def test_every_rule_became_a_slurm_job(runs):
    _, slurm, watcher, _, local_jobs, _ = runs
    ran_locally = Counter(job["rule"] for job in local_jobs if job["rule"] != "all")
    assert {"synthesize_raw", "prepare", "embed", "quantize", "finetune", "finetune_multistage", "evaluate_ours",
            "textgen_baseline", "evaluate_i2i", "summary"} <= set(ran_locally)
    on_slurm = Counter(rule_of(job["comment"]) for job in watcher.jobs.values() if job["comment"].startswith("rule_"))
    # the same jobs, plus the one finetune job the watcher cancelled (submitted again)
    assert on_slurm == ran_locally + Counter({"finetune": 1})
    # the plugin's own per-job logs agree (kept by slurm-keep-successful-logs)
    logs = (slurm / ".snakemake" / "slurm_logs").rglob("*.log")
    logged = {next(part for part in p.parts if part.startswith("rule_")).removeprefix("rule_") for p in logs}
    assert logged == set(ran_locally)


def test_gpu_rules_got_a_gpu_and_cpu_rules_did_not(runs):
    _, slurm, watcher, _, local_jobs, gpu = runs
    assert {"embed", "finetune", "finetune_multistage", "evaluate_ours", "textgen_ours", "textgen_baseline",
            "evaluate_i2i"} <= gpu
    for job in watcher.jobs.values():
        if not job["comment"].startswith("rule_"):
            continue
        rule = rule_of(job["comment"])
        if rule in gpu:
            assert job["partition"] == "gpu" and "gpu:1" in job["tres"], job
        else:
            assert job["partition"] == "main" and "gpu" not in job["tres"], job
    rule_of_log = {log: job["rule"] for job in local_jobs for log in job["log"]}
    logs = sorted((slurm / "logs").rglob("*.log"))
    assert {str(p.relative_to(slurm)) for p in logs} == set(rule_of_log)
    for log in logs:
        seen = re.findall(r"CUDA_VISIBLE_DEVICES=(\S+)", log.read_text())
        assert seen, f"{log} does not record CUDA_VISIBLE_DEVICES"
        if rule_of_log[str(log.relative_to(slurm))] in gpu:
            assert all(re.fullmatch(r"\d+(,\d+)*", v) for v in seen), (log, seen)
        else:
            assert set(seen) == {"<unset>"}, (log, seen)


def test_cancelled_job_is_retried_with_more_time(runs):
    _, slurm, watcher, *_ = runs
    assert watcher.killed, "the watcher never saw a running finetune job"
    killed = watcher.jobs[watcher.killed]
    assert killed["state"] == "CANCELLED"
    retries = [j for jid, j in watcher.jobs.items()
               if j["comment"] == killed["comment"] and int(jid) > int(watcher.killed)]
    assert len(retries) == 1 and retries[0]["state"] == "COMPLETED"
    assert minutes(retries[0]["limit"]) == 2 * minutes(killed["limit"]) == 20
    assert (slurm / f"results/{CAT}/ours/model/adapter_model.safetensors").is_file()


def untimed(obj):
    """A result without its wall-clock fields (``seconds``, ``users_per_second``, ...): the only thing allowed to
    differ between runs."""
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if not re.search(r"(^|_)seconds?$", k)}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj


def test_results_equal_the_local_run(runs):
    local, slurm, *_ = runs
    for rel in (f"results/{CAT}/ids/rqvae/index.json", f"results/{CAT}/ours/seqrec_metrics.json",
                f"results/{CAT}/popularity/seqrec_metrics.json", f"results/{CAT}/prepared/{CAT}.inter.json"):
        assert untimed(json.loads((slurm / rel).read_text())) == untimed(json.loads((local / rel).read_text())), rel
    assert (slurm / "results/summary.csv").read_text() == (local / "results/summary.csv").read_text()
    assert (slurm / f"results/{CAT}/ours/seqrec_topk.jsonl").read_text() == \
        (local / f"results/{CAT}/ours/seqrec_topk.jsonl").read_text()
