"""Seqrec driver pieces: per-template aggregation (mean/min/max), collision handling, per-user output."""

import json

import numpy as np
import pytest

from mmgenrec.evaluate.seqrec import expand, item_trie, write_results


def test_write_results_averages_templates_and_reports_min_max(tmp_path):
    users, targets = ["u1", "u2"], [5, 7]
    by_template = {"0": [[5, 1], [1, 2]],    # u1 rank 0, u2 absent -> HR@1 0.5, MRR 0.5
                   "2": [[1, 5], [7, 1]]}    # u1 rank 1, u2 rank 0 -> HR@1 0.5, MRR 0.75
    res = write_results(tmp_path / "m.json", tmp_path / "t.jsonl", users, targets, by_template,
                        {"method": "x"}, collided={7})
    assert res["per_template"]["0"]["MRR"] == pytest.approx(0.5)
    assert res["per_template"]["2"]["MRR"] == pytest.approx(0.75)
    assert res["MRR"] == pytest.approx(0.625)
    assert res["template_stats"]["MRR"] == pytest.approx({"mean": 0.625, "min": 0.5, "max": 0.75})
    assert res["HR@5"] == pytest.approx(0.75)  # u1 hit in both, u2 in one
    assert res["collision_target_fraction"] == 0.5 and res["template_ids"] == ["0", "2"]
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["user"] for r in rows] == users
    assert rows[0]["topk"] == [5, 1] and rows[0]["per_template"]["2"] == [1, 5]
    assert rows[0]["MRR"] == pytest.approx(0.75) and rows[1]["MRR"] == pytest.approx(0.5)  # per-user template means
    assert np.mean([r["MRR"] for r in rows]) == pytest.approx(res["MRR"])
    assert [r["collided_target"] for r in rows] == [False, True]
    assert json.loads((tmp_path / "m.json").read_text())["MRR"] == pytest.approx(0.625)


class _Tok:
    def __init__(self, tokens):
        self.vocab = {"<|endoftext|>": 0, "<|im_end|>": 1, **{t: i + 2 for i, t in enumerate(tokens)}}
        self.eos_token_id, self.pad_token_id = 1, 0

    def get_vocab(self):
        return self.vocab


def test_item_trie_with_collisions_and_expand():
    index = {0: ["<a_1>", "<b_2>"], 1: ["<a_1>", "<b_3>"], 2: ["<a_1>", "<b_2>"], 3: ["<a_0>", "<b_0>"]}
    tok = _Tok(["<a_0>", "<a_1>", "<b_0>", "<b_2>", "<b_3>"])
    trie, entries = item_trie(index, tok)
    assert len(trie) == 3 and trie.eos_token_id == 1
    assert sorted(map(tuple, entries)) == [(0, 2), (1,), (3,)]
    shared = entries.index([0, 2])
    other = entries.index([3])
    assert expand([shared, other], entries, 10) == [0, 2, 3]
    assert expand([shared, other], entries, 2) == [0, 2]
    with pytest.raises(Exception, match="missing from the model's tokenizer"):
        item_trie({0: ["<a_9>", "<b_0>"]}, tok)
