"""I2I: co-occurrence labels and faiss neighbour metrics against hand-computed values."""

import math

import numpy as np
import pytest

from mmgenrec.evaluate.i2i import cooccurrence_labels, evaluate_i2i, i2i_metrics, token_mean_vectors
from mmgenrec.io import InputError, read_json, write_json


def test_cooccurrence_labels_hand_case():
    seqs = [[0, 1, 2], [0, 1], [2, 3, 2], [4]]
    # pairs (sequences shared): 0-1: 2, 0-2: 1, 1-2: 1, 2-3: 1 (repeat within a sequence counts once)
    np.testing.assert_array_equal(cooccurrence_labels(seqs, 6), [1, 0, 0, 2, -1, -1])
    ties = cooccurrence_labels([[3, 1], [3, 0]], 4)  # item 3 ties between 0 and 1: the lower id
    assert ties[3] == 0
    with pytest.raises(ValueError):
        cooccurrence_labels([[0, 9]], 3)


def test_i2i_metrics_hand_case():
    # cosine neighbours: item 0 -> 1 (rank 0), then 2; item 1 -> 0; item 2 -> 3; item 3 -> 2
    vec = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32) * [[1], [5], [2], [3]]
    labels = np.array([1, 2, -1, 2])
    m = i2i_metrics(vec, labels, ks=(1, 2), ndcg_k=2)
    # item 0: label 1 at rank 0; item 1: label 2 at rank 2 (0, 3 closer) -> outside k=2; item 3: label 2 at rank 0
    assert m["n_queries"] == 3
    assert m["Hit@1"] == pytest.approx(2 / 3) and m["Hit@2"] == pytest.approx(2 / 3)
    assert m["NDCG@2"] == pytest.approx(2 / 3)
    m3 = i2i_metrics(vec, labels, ks=(3,), ndcg_k=3)
    assert m3["Hit@3"] == pytest.approx(1.0)
    assert m3["NDCG@3"] == pytest.approx((1 + 1 / math.log2(4) + 1) / 3)


def test_token_mean_vectors():
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = token_mean_vectors(emb, [[0, 2], [5, 5]])
    np.testing.assert_allclose(out, [[2, 3], [10, 11]])


def test_evaluate_i2i_scores_the_reconstruction_as_its_own_source(tmp_path):
    raw = np.random.default_rng(0).normal(size=(12, 12)).astype(np.float32)
    np.save(tmp_path / "raw.npy", raw)
    write_json(tmp_path / "inter.json", {"0": [0, 1, 2, 3, 4], "1": [0, 1, 5, 6, 7], "2": [8, 9, 10, 11, 3, 2]})
    write_json(tmp_path / "index.json", {str(i): [f"<a_{i}>", "<b_0>"] for i in range(12)})
    labels = cooccurrence_labels([[0, 1, 2], [0, 1, 5], [8, 9, 10, 11]], 12)  # training part: all but the last two
    # decoded vectors that lean towards each item's label
    recon = np.eye(12, dtype=np.float32) + 0.9 * np.eye(12, dtype=np.float32)[np.maximum(labels, 0)]
    np.save(tmp_path / "recon.npy", recon)
    out = evaluate_i2i(tmp_path / "inter.json", tmp_path / "raw.npy", tmp_path / "index.json", tmp_path / "m.json",
                       reconstruction_npy=tmp_path / "recon.npy")
    assert set(out["sources"]) == {"raw", "reconstruction"} and read_json(tmp_path / "m.json") == out
    assert out["sources"]["reconstruction"] == i2i_metrics(recon, labels)
    assert out["sources"]["raw"] == i2i_metrics(raw, labels)
    assert out["sources"]["reconstruction"]["Hit@1"] > out["sources"]["raw"]["Hit@1"]
    np.save(tmp_path / "short.npy", recon[:5])
    with pytest.raises(InputError, match="short.npy"):
        evaluate_i2i(tmp_path / "inter.json", tmp_path / "raw.npy", tmp_path / "index.json", tmp_path / "m2.json",
                     reconstruction_npy=tmp_path / "short.npy")
