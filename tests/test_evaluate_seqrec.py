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


def test_evaluate_seqrec_same_metrics_with_either_decoder(tiny, tmp_path, one_torch_thread):
    """The demo's evaluate job on a briefly finetuned tiny Qwen2.5-VL: the trie beam search (default) and HF
    generate + the trie processor give the same per-user top-k lists and metrics (3-level ids with collisions,
    more beams than items under a prefix)."""
    import random

    from mmgenrec.evaluate.seqrec import evaluate_seqrec
    from mmgenrec.finetune.train import finetune_seqrec

    rng = random.Random(0)
    levels, k = 3, 4
    tokens = [f"<{chr(97 + lv)}_{c}>" for lv in range(levels) for c in range(k)]
    codes = rng.sample([(a, b, c) for a in range(k) for b in range(k) for c in range(k)], 24)
    codes[5] = codes[4]  # a collision: items 4 and 5 share one id
    index = {str(i): [f"<a_{a}>", f"<b_{b}>", f"<c_{c}>"] for i, (a, b, c) in enumerate(codes)}
    inter = {str(u): [(u + 3 * t) % 24 for t in range(6)] for u in range(20)}
    (tmp_path / "index.json").write_text(json.dumps(index))
    (tmp_path / "inter.json").write_text(json.dumps(inter))
    adapter = tmp_path / "model"
    finetune_seqrec(tiny, tmp_path / "inter.json", tmp_path / "index.json", adapter, all_tokens=tokens, epochs=1,
                    batch_size=8, lr=5e-3, device="cpu")
    out = {}
    for decoder in ("hf", "trie_beam"):
        metrics = evaluate_seqrec(tiny, adapter, tmp_path / "inter.json", tmp_path / "index.json",
                                  tmp_path / f"{decoder}.json", tmp_path / f"{decoder}.jsonl", num_beams=12,
                                  top_k=10, batch_size=7, template_ids=(0, 1), device="cpu", decoder=decoder)
        out[decoder] = metrics, (tmp_path / f"{decoder}.jsonl").read_text()
    (hf, hf_topk), (ours, ours_topk) = out["hf"], out["trie_beam"]
    assert ours_topk == hf_topk
    assert ours["decoder"] == "trie_beam" and hf["decoder"] == "hf"
    timing = {"seconds", "users_per_second", "decoder"}
    assert {m: v for m, v in ours.items() if m not in timing} == {m: v for m, v in hf.items() if m not in timing}
    assert ours["n_users"] == 20 and ours["invalid_beam_fraction"] == 0.0
