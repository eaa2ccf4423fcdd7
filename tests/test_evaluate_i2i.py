"""I2I: co-occurrence labels and faiss neighbour metrics against hand-computed values."""

import math

import numpy as np
import pytest

from mmgenrec.evaluate.i2i import cooccurrence_labels, i2i_metrics, token_mean_vectors


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
