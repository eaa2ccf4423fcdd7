"""A rule runs inside a container through Snakemake's own ``--sdm apptainer`` path, with podman as the runtime.

Debian has no apptainer package, so ``containers/shim/apptainer`` (first on PATH) turns Snakemake's
``apptainer pull`` / ``apptainer exec`` calls into ``podman run``; the image is the small CPU image that
``containers/build_cpu_image.sh`` builds offline (debootstrap + podman import + podman build). The test runs
``synthesize_raw`` for one category in the container (the global ``container:`` directive, pointed at the local
image with ``--config container=...``) and on the host, and checks that podman really ran the image (podman
events, the shim's log) and that both wrote the same data.

Skipped with the reason where podman cannot be installed or run (not root, no apt).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from smkrun import no_slurm_env

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CAT = "demo_music"
TARGET = f"resources/raw/{CAT}/meta_{CAT}.json.gz"

container = pytest.mark.container


@pytest.fixture(scope="module")
def image():  # noqa: D103 - used by the container tests only
    if sys.platform != "linux":
        pytest.skip("podman containers need Linux")
    proc = subprocess.run(["bash", str(REPO / "containers" / "build_cpu_image.sh")], capture_output=True, text=True)
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


def env(shim_log: Path) -> dict[str, str]:
    out = no_slurm_env()
    out["PATH"] = os.pathsep.join([str(REPO / "containers" / "shim"), str(Path(sys.executable).parent), out["PATH"]])
    out["CONTAINERS_CONF"] = str(REPO / "containers" / "containers.conf")
    out["MMGENREC_SHIM_LOG"] = str(shim_log)
    return out


def snakemake(workdir: Path, *extra: str, shim_log: Path) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1", TARGET, *extra,
           "--configfile", str(REPO / "config" / "demo.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(shim_log), cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def runs(image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("container")
    host, boxed, shim_log = tmp / "host", tmp / "boxed", tmp / "shim.log"
    host.mkdir(), boxed.mkdir()
    snakemake(host, shim_log=shim_log)
    assert not shim_log.exists(), "without --sdm apptainer the container directive must be ignored"
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    proc = snakemake(boxed, "--sdm", "apptainer", "--config", f"container=docker://{image}", shim_log=shim_log)
    out = subprocess.run(["podman", "events", "--stream=false", "--since", since, "--filter", "type=container",
                          "--format", "{{.Status}} {{.Image}}"], capture_output=True, text=True, env=env(shim_log))
    events = [line.split()[0] for line in out.stdout.splitlines() if line.endswith(f" {image}")]
    return host, boxed, shim_log.read_text(), events, proc.stderr


@container
@pytest.mark.slow
def test_rule_ran_in_the_container(runs, image):
    _, boxed, shim_log, events, stderr = runs
    assert "Activating singularity image" in stderr
    assert "apptainer pull --name" in shim_log and f"docker://{image}" in shim_log
    exec_lines = [line for line in shim_log.splitlines() if " exec " in line and "synthesize_raw" in line]
    assert len(exec_lines) == 1, shim_log
    assert "start" in events and "died" in events, events
    assert (boxed / TARGET).is_file()


def _records(path: Path) -> list:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


@container
@pytest.mark.slow
def test_container_output_equals_host_output(runs):
    host, boxed, _, _, _ = runs
    raw = Path("resources/raw") / CAT
    for name in (f"meta_{CAT}.json.gz", f"{CAT}_5.json.gz"):
        assert _records(boxed / raw / name) == _records(host / raw / name), name
    assert json.loads((boxed / raw / "synthetic_stats.json").read_text()) == \
        json.loads((host / raw / "synthetic_stats.json").read_text())
    images = sorted(p.name for p in (host / raw / "images").iterdir())
    assert images and images == sorted(p.name for p in (boxed / raw / "images").iterdir())


# ---------------------------------------------------------------- --sdm conda: every rule has a valid environment

def test_every_rule_declares_an_existing_conda_env():
    """Each rule in rules/ (rules/methods/ too) names a conda env file that exists, and the envs pin what pyproject
    pins (its dependencies and its optional extras, e.g. deepspeed)."""
    import re
    import tomllib

    pins = {}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]:
        name, sep, version = dep.partition("==")
        if sep:
            pins[name] = version
    rules = 0
    for smk in sorted((REPO / "rules").rglob("*.smk")):
        for name, body in re.findall(r"^\s*rule (\w+):\n(.*?)(?=^\s*rule \w+:|\Z)", smk.read_text(), re.M | re.S):
            if "script:" not in body:
                continue
            rules += 1
            match = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            assert match, f"{smk.name}: rule {name} has no conda: env"
            env_file = (smk.parent / match.group(1)).resolve()
            env = yaml.safe_load(env_file.read_text())
            deps = env["dependencies"]
            assert "python=3.11" in deps, env_file
            for pip in (d["pip"] for d in deps if isinstance(d, dict)):
                for line in pip:
                    pkg, sep, version = line.partition("==")
                    if sep:
                        assert pins.get(pkg) == version, f"{env_file.name}: {line} but pyproject pins {pins.get(pkg)}"
    assert rules >= 30
