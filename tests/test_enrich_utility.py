"""Utility pieces: the vectorised negative sampler keeps Cornac's contract, one shared text encoder, image
features, the leave-one-out split. (The verdicts on the demo data are tested end to end in test_workflow_enrich.)"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmgenrec.enrich.utility import _uniform_dataset_class, image_features, loo_split, text_features
from mmgenrec.io import InputError


def test_negatives_are_uniform_non_positives():
    triples = [("u0", 0, 1.0), ("u0", 1, 1.0), ("u0", 2, 1.0), ("u1", 3, 1.0)]
    ds = _uniform_dataset_class().build(triples, global_uid_map={"u0": 0, "u1": 1},
                                        global_iid_map={i: i for i in range(5)}, seed=3)
    pos = {0: {0, 1, 2}, 1: {3}}
    seen = {0: set(), 1: set()}
    for _ in range(200):
        for u, i, j in ds.uij_iter(batch_size=2, shuffle=True):
            assert all(int(jj) not in pos[int(uu)] for uu, jj in zip(u, j))
            assert all(int(ii) in pos[int(uu)] for uu, ii in zip(u, i))
            for uu, jj in zip(u, j):
                seen[int(uu)].add(int(jj))
    assert seen == {0: {3, 4}, 1: {0, 1, 2, 4}}  # every allowed negative is drawn


def test_text_features_share_one_encoder():
    a = ["red guitar strings", "blue drum sticks", "red guitar capo", "blue drum kit"]
    b = [t + " flagship line" for t in a]
    fa, fb = text_features(a, b, 3)
    fa2, fb2 = text_features(a, b, 3)
    assert np.array_equal(fa, fa2) and np.array_equal(fb, fb2)  # deterministic
    assert fa.shape == fb.shape == (4, 3)
    fa_same, fb_same = text_features(a, a, 3)
    assert np.allclose(fa_same, fb_same)  # same text -> same features


def test_image_features_and_missing_images(tmp_path):
    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "a.jpg")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "b.jpg")
    items = {"0": {"image": "a.jpg"}, "1": {"image": "b.jpg"}, "2": {"image": None}}
    f = image_features(items, ["0", "1", "2"], tmp_path, 2)
    assert f.shape == (3, 12) and np.all(f[2] == 0) and not np.allclose(f[0], f[1])


def test_loo_split():
    users, train, valid, test = loo_split({"0": [1, 2, 3, 4], "1": [5, 6], "2": [7, 8, 9]})
    assert users == ["0", "2"] and train["0"] == [1, 2] and valid["0"] == 3 and test["0"] == 4
    with pytest.raises(InputError):
        loo_split({"0": [1, 2]})


def test_run_utility_reports_the_bootstrap_verdict_and_the_aa_run(tmp_path):
    """A tiny run: the verdict is the primary metric's interval verdict; the A/A run trains the original text with
    the next seeds and compares it with itself (the seeds pooled: C(6, 3) / 2 = 10 splits)."""
    from mmgenrec.enrich.utility import run_utility, utility_markdown

    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "guitar", "drum", "piano", "strings", "case", "stand", "cable"]
    items = {str(i): {"title": " ".join(rng.choice(words, 3, replace=False)), "image": None} for i in range(12)}
    inter = {str(u): [int(x) for x in rng.choice(12, 5, replace=False)] for u in range(30)}
    cfg = dict(seeds=[0, 1, 2], top_k=5, text_dim=2, vbpr={"n_epochs": 2, "k": 2, "k2": 2}, n_boot=200)
    rep = run_utility(inter, items, {}, tmp_path, **cfg)
    assert rep["verdict"] == rep["comparison"]["ndcg@5"]["verdict"] == "no_difference"  # no enrichment: same text
    assert rep["comparison"]["ndcg@5"]["ci"] == [0.0, 0.0]  # same features, same seeds: identical models
    assert rep["aa"]["seeds"] == [3, 4, 5] and rep["aa"]["draws"] == 10
    assert "A/A calibration (original text, seeds [0, 1, 2] vs [3, 4, 5]" in utility_markdown(rep, "tiny")
    assert "aa" not in run_utility(inter, items, {}, tmp_path, **cfg, aa_seeds=[])
    with pytest.raises(ValueError, match="must not share a seed"):
        run_utility(inter, items, {}, tmp_path, **cfg, aa_seeds=[2, 3, 4])
