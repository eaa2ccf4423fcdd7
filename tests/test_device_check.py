"""benchmarks/device_check.sh --tiny (issue 18, item 8): the whole device check runs on the CPU at toy sizes and
writes one JSON + markdown result holding every figure the GPU run is for."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {  # figure -> the numbers it must hold
    "train_plain": ("tokens_per_s", "seconds_per_step", "lm_params"),
    "decode": ("users_per_s_reference", "users_per_s_vectorised", "users_per_s_trie_beam", "ours_over_reference"),
    "rqvae_epoch": ("epoch_seconds_mean", "collision_rate_nearest_codes"),
    "embed_batch1_fp32": ("items_per_s",),
    "embed_batched_bf16": ("items_per_s",),
}


@pytest.mark.slow
def test_tiny_device_check_writes_every_figure(tmp_path):
    out = tmp_path / "dc"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    subprocess.run(["bash", str(REPO / "benchmarks" / "device_check.sh"), "--tiny", str(out)], cwd=tmp_path,
                   env=env, check=True, timeout=900, capture_output=True)
    result = json.loads((tmp_path / "dc.json").read_text())
    figures = result["figures"]
    assert result["tiny"] is True and set(figures) == set(EXPECTED) | {"train_deepspeed"}
    for fig, keys in EXPECTED.items():
        assert "error" not in figures[fig], figures[fig]
        for key in keys:
            v = figures[fig][key]
            assert isinstance(v, (int, float)) and math.isfinite(v), (fig, key, v)
            assert v >= 0 if key == "collision_rate_nearest_codes" else v > 0, (fig, key, v)
    assert "DeepSpeed" in figures["train_deepspeed"]["skipped"]  # no GPU in --tiny: said, not silently absent
    # what was measured is what was asked for: the toy sizes, the two embedding batch sizes
    assert figures["train_plain"]["size"] == "tiny" and figures["rqvae_epoch"]["items"] == 300
    assert figures["rqvae_epoch"]["detach_residual"] is True and figures["rqvae_epoch"]["epochs"] == 2
    assert figures["embed_batch1_fp32"]["batch_size"] == 1 and figures["embed_batched_bf16"]["batch_size"] == 4
    assert figures["embed_batch1_fp32"]["items"] == figures["embed_batched_bf16"]["items"] == 8
    md = (tmp_path / "dc.md").read_text()
    assert md.count("\n| ") >= 12 and f"{figures['decode']['users_per_s_reference']}" in md
