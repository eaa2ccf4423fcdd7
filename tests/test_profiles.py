"""The execution profiles agree with the workflow: every rule that asks for a GPU under the real config goes to
the SLURM GPU partition, and no CPU rule does (a rule added later without a profile entry would land on a CPU
node with ``--gpus`` and wait there forever, or run on no GPU)."""

from __future__ import annotations

import pytest
import yaml

from smkrun import REPO, gpu_rules

pytestmark = pytest.mark.slow  # a dry-run of the real study's DAG (about 10 s)


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    return gpu_rules(tmp_path_factory.mktemp("profiles"), REPO / "config" / "config.yaml")


def test_slurm_profile_puts_exactly_the_gpu_rules_on_the_gpu_partition(gpu):
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["default-resources"]["slurm_partition"] == "main"
    on_gpu = {rule for rule, res in profile["set-resources"].items() if res.get("slurm_partition") == "gpu"}
    assert {"embed", "finetune", "evaluate_ours"} <= gpu
    assert on_gpu == gpu

