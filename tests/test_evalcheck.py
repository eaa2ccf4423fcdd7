"""The independent expectations of the end-to-end evaluation module (tests/evalcheck.py) on hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from evalcheck import cooccurrence_label, i2i_scores, read_generations, text_scores


def test_text_scores_hand_computed(tmp_path):
    path = tmp_path / "textgen_generations.jsonl"
    rows = [{"item": "0", "generation": "the cat sat on the mat", "reference": "the cat sat on the mat"},
            {"item": "1", "generation": "the cat sat on the mat", "reference": "the cat sat on a mat"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = text_scores(read_generations(path))
    # ROUGE-L: 1, then LCS "the cat sat on mat" = 5 of 6 tokens each side -> F1 5/6; mean 11/12
    assert got["ROUGE-L"] == pytest.approx(11 / 12)
    # corpus BLEU: clipped n-gram matches 1..4 = 11/12, 8/10, 6/8, 4/6; 12 vs 12 tokens (no brevity penalty)
    bleu = 100 * math.exp((math.log(11 / 12) + math.log(8 / 10) + math.log(6 / 8) + math.log(4 / 6)) / 4)
    assert got["BLEU"] == pytest.approx(bleu, abs=1e-6)
    assert text_scores([rows[0]]) == {"BLEU": pytest.approx(100.0), "ROUGE-L": 1.0}
    swapped = text_scores([{"generation": "the cat", "reference": "the cat sat on the mat"}])
    assert swapped["BLEU"] < 5  # brevity penalty: the hypothesis is short (the order of the arguments matters)


def test_cooccurrence_label_and_i2i_hand_computed():
    # item 0 co-occurs with 1 twice, with 2 once -> 1; item 3 with nothing -> no label; tie 2: {0: 1, 1: 1} -> 0
    seqs = [[0, 1], [0, 1, 2], [3]]
    assert cooccurrence_label(seqs) == {0: 1, 1: 0, 2: 0}
    # cosine neighbours: 0 ~ 1 (label 1 first: rank 0), 1's label 0 is its nearest too, 2's label 0 comes after 3
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]])
    got = i2i_scores(v, seqs, ks=(1, 5), ndcg_k=10)
    # ranks: item 0 -> 0, item 1 -> 0, item 2: neighbours by cosine 3, 1, 0 -> label 0 at rank 2
    assert got["Hit@1"] == pytest.approx(2 / 3) and got["Hit@5"] == 1.0 and got["n_queries"] == 3
    assert got["NDCG@10"] == pytest.approx((1 + 1 + 1 / math.log2(4)) / 3)


def test_the_evaluate_code_meets_the_hand_computed_cases():
    """The project's scorers on the same hand-made cases (what the end-to-end module relies on)."""
    from mmgenrec.evaluate.i2i import cooccurrence_labels, i2i_metrics
    from mmgenrec.evaluate.textgen import text_metrics

    got = text_metrics(["the cat sat on the mat", "the cat sat on the mat"],
                       ["the cat sat on the mat", "the cat sat on a mat"])
    bleu = 100 * math.exp((math.log(11 / 12) + math.log(8 / 10) + math.log(6 / 8) + math.log(4 / 6)) / 4)
    assert got["ROUGE-L"] == pytest.approx(11 / 12) and got["BLEU"] == pytest.approx(bleu, abs=1e-6)
    assert text_metrics(["the cat"], ["the cat sat on the mat"])["BLEU"] < 5  # hypotheses and references not swapped
    seqs = [[0, 1], [0, 1, 2], [3]]
    assert cooccurrence_labels(seqs, 4).tolist() == [1, 0, 0, -1]
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]])
    m = i2i_metrics(v, cooccurrence_labels(seqs, 4), ks=(1, 5), ndcg_k=10)
    assert m["Hit@1"] == pytest.approx(2 / 3) and m["Hit@5"] == 1.0 and m["n_queries"] == 3
    assert m["NDCG@10"] == pytest.approx((1 + 1 + 1 / math.log2(4)) / 3)
