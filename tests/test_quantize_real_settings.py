"""The real study's quantize settings run (issue 18, item 7): config/config.yaml's `quantize` section as it is
(RQ-VAE 4 x 256, LC-Rec's MLP, sinkhorn collision policy, best-collision selection, no standardization, detached
residual) on a small input in the real format (float32 .npy, one row per item id), only the epochs lowered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mmgenrec.io import read_json
from mmgenrec.quantize.run import load_index, quantize_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]


def test_real_quantize_settings_give_a_valid_collision_free_index(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["quantize"]
    # the settings this test exists for, as the real config has them
    assert (cfg["tokenizer"], cfg["collision_policy"], cfg["select"], cfg["standardize"]) == \
        ("rqvae", "sinkhorn", "best_collision", False)
    assert cfg["levels"] == 4 and cfg["codebook_size"] == 256
    cfg = dict(cfg, epochs=20, eval_every=5, device="cpu")  # only the length of training changes
    x = np.random.default_rng(0).normal(size=(300, 64)).astype(np.float32)
    x[250:] = x[:50]  # 50 items identical to others (same vectors, same nearest codes): the policy must split them
    np.save(tmp_path / "qwen_mm.npy", x)
    stats = quantize_file(tmp_path / "qwen_mm.npy", tmp_path / "index.json", tmp_path / "stats.json",
                          plot_path=tmp_path / "curve.png", checkpoint_dir=tmp_path / "ckpt",
                          reconstruction_path=tmp_path / "recon.npy", **cfg)
    index = load_index(tmp_path / "index.json", codebook_size=256)  # strict: collisions refused
    assert sorted(index) == list(range(300)) and all(len(v) == 4 for v in index.values())
    assert len({tuple(v) for v in index.values()}) == 300
    assert stats["collisions_after"]["collision_rate"] == 0 and read_json(tmp_path / "stats.json") == stats
    assert stats["collisions_before"]["items_in_collisions"] >= 100  # the sinkhorn policy had work to do
    assert stats["config"]["select"] == "best_collision" and stats["standardize"] is False
    assert stats["collision_policy"] == "sinkhorn" and stats["config"]["detach_residual"] is True
    assert np.load(tmp_path / "recon.npy").shape == (300, 64)
    # the selected checkpoint is the lowest-collision check (every 5 epochs and the last)
    checked = [h for h in stats["history"] if h["collision_rate"] is not None]
    assert [h["epoch"] for h in checked] == [5, 10, 15, 20]
