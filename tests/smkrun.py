"""Running the real workflow from tests: ``snakemake`` as a subprocess, and reading what it printed.

Shared by the end-to-end modules (``test_workflow*.py``, ``test_report.py``, ``test_slurm.py``, ...).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
NO_SLURM = REPO / "tests" / "noslurm"  # a `scontrol` that answers "no controller" at once (see the script)


def no_slurm_env() -> dict[str, str]:
    """This process's environment with ``tests/noslurm`` first on PATH: for the runs that use no SLURM."""
    return {**os.environ, "PATH": f"{NO_SLURM}{os.pathsep}{os.environ.get('PATH', '')}"}


def smk(workdir: Path, *args: str, config: Path | None = None, check: bool = True, cores: int = 2,
        env: dict[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``snakemake -s <repo>/Snakefile -d workdir --cores N *args [--configfile config]`` in ``workdir``.

    ``--configfile`` goes last: it takes every word after it, so targets must come before it. Without ``env``
    the run gets :func:`no_slurm_env` (the SLURM tests pass their own).
    """
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", str(cores), *args]
    if config is not None:
        cmd += ["--configfile", str(config)]
    env = no_slurm_env() if env is None else env
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def jobs(text: str) -> list[dict]:
    """Every job block Snakemake printed (a run's log or a dry-run): ``{"rule", "wildcards", "log", "resources"}``.

    A block starts at ``rule X:`` / ``localrule X:`` and lists indented ``key: value`` lines.
    """
    out: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        match = re.fullmatch(r"(?:local)?rule (\w+):", line)
        if match:
            out.append({"rule": match.group(1), "wildcards": {}, "log": [], "resources": {}})
        elif out and raw.startswith("    ") and ": " in line:
            key, value = line.split(": ", 1)
            if key == "wildcards":
                out[-1]["wildcards"] = dict(kv.strip().split("=", 1) for kv in value.split(","))
            elif key == "log":
                out[-1]["log"] = [v.strip() for v in value.split(",")]
            elif key == "resources":
                out[-1]["resources"] = dict(kv.strip().split("=", 1) for kv in value.split(",") if "=" in kv)
    return out


def dry_run_jobs(workdir: Path, *targets: str, config: Path | None = None) -> list[dict]:
    """The jobs a dry-run for ``targets`` would run (see :func:`jobs`)."""
    return jobs(smk(workdir, "-n", *targets, config=config).stdout)


def gpu_rules(workdir: Path, config: Path) -> set[str]:
    """Rules whose jobs ask for a GPU (a ``gpu`` resource above 0) under ``config``, over every target: the
    default DAG plus the named-only ones (ablation grid, MQL4Rec IDs). ``--forceall``: every job is listed even
    where ``workdir`` holds a finished run."""
    cats = list(yaml.safe_load(config.read_text())["categories"])
    targets = ["all", "results/ablation_ids.csv", f"results/{cats[0]}/ids/mql4rec/index.json"]
    return {job["rule"] for job in dry_run_jobs(workdir, "--forceall", *targets, config=config)
            if int(job["resources"].get("gpu", 0)) > 0}
