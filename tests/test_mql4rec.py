"""MQL4Rec (kind mql4rec): the public rank fusion, the task samples, relabelling and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from mmgenrec.io import InputError, read_json
from mmgenrec.methods.mql4rec import Tasks, fuse, run_mql4rec
from mmgenrec.methods.t5_data import EOS, T5Vocab, item_ids, to_upper


def test_fusion_of_a_hand_made_case():
    text = [(5, -0.1), (3, -0.5), (7, -0.9)]
    image = [(3, -0.2), (8, -0.3), (5, -2.0)]
    # walking rank by rank, text first: 5 -0.1 | 3 -0.2 | 3 seen: (-0.5 - 0.2)/2 + 1 = 0.65 | 8 -0.3 | 7 -0.9 |
    # 5 seen: (-2.0 - 0.1)/2 + 1 = -0.05
    assert fuse(text, image) == [3, 5, 8, 7]
    # the single text path ranked 5 first: the bonus for agreement moves 3 above it (the HR@1 loss of the paper's
    # public ensemble when the text path was right)
    # without the bonus the mean pulls an item down: 5 -> (-2.0 - 0.1)/2 = -1.05, 3 -> -0.35
    assert fuse(text, image, bonus=0.0) == [8, 3, 7, 5]
    assert fuse([(1, -0.4)], [(2, -0.4)]) == [1, 2]  # a tie keeps the first seen (text) first


def test_relabelling_keeps_the_two_vocabularies_apart():
    text = {0: ["<a_1>", "<b_0>"], 1: ["<a_0>", "<b_1>"]}
    image = to_upper({0: ["<a_1>", "<b_1>"], 1: ["<a_0>", "<b_0>"]})
    assert image == {0: ["<A_1>", "<B_1>"], 1: ["<A_0>", "<B_0>"]}
    vocab = T5Vocab.build([text, image])
    assert vocab.tokens[2:] == ["<a_0>", "<a_1>", "<b_0>", "<b_1>", "<A_0>", "<A_1>", "<B_0>", "<B_1>"]


def test_task_samples_of_a_five_item_user():
    # the training part of a five-item user is its first three items
    text = {i: [f"<a_{i}>"] for i in range(5)}
    image = to_upper({i: [f"<a_{4 - i}>"] for i in range(5)})
    prompts = [f"<task_{t}_{k}>" for t in ("item2image", "image2item", "fusionseqrec") for k in range(2)]
    vocab = T5Vocab.build([text, image], prompt_tokens=prompts)
    # ids: pad 0, eos 1, prompts 2..7 (item2image 2 3, image2item 4 5, fusionseqrec 6 7), <a_i> 8+i, <A_i> 13+i
    tt, it = item_ids(vocab, text), item_ids(vocab, image)
    assert tt == {i: [8 + i] for i in range(5)} and it == {i: [13 + 4 - i] for i in range(5)}
    tasks = Tasks({"u": [0, 1, 2]}, vocab, tt, it, ["seqrec", "seqimage", "item2image", "image2item",
                                                    "fusionseqrec"], prompt_num=2, max_history=20, seed=0)
    static = [
        ([8, EOS], [9, EOS]), ([8, 9, EOS], [10, EOS]),            # seqrec: text -> text
        ([17, EOS], [16, EOS]), ([17, 16, EOS], [15, EOS]),        # seqimage: image -> image
        *[([2, 3, 8 + i, EOS], [17 - i, EOS]) for i in range(5)],  # item2image, every item
        *[([4, 5, 17 - i, EOS], [8 + i, EOS]) for i in range(5)],  # image2item
    ]
    assert tasks.static == static
    t2i = [([6, 7, 8, EOS], [16, EOS]), ([6, 7, 8, 9, EOS], [15, EOS])]
    i2t = [([6, 7, 17, EOS], [9, EOS]), ([6, 7, 17, 16, EOS], [10, EOS])]
    for epoch in range(6):
        fusion = tasks.of_epoch(epoch)[len(static):]
        assert all(s in (a, b) for s, a, b in zip(fusion, t2i, i2t)) and len(fusion) == 2
        assert tasks.of_epoch(epoch) == tasks.of_epoch(epoch)  # deterministic per epoch
    assert len({tuple(map(str, tasks.of_epoch(e)[len(static):])) for e in range(6)}) > 1  # redrawn per epoch


def planted(tmp_path, n=12, users=60):
    text = {str(i): [f"<a_{i % 3}>", f"<b_{i // 3}>"] for i in range(n)}
    image = {str(i): [f"<a_{i % 4}>", f"<b_{i // 4}>"] for i in range(n)}  # lower case: relabelled
    seqs = {f"u{u}": [(u + k) % n for k in range(6 + u % 3)] for u in range(users)}
    for name, obj in (("text", text), ("image", image), ("inter", seqs)):
        (tmp_path / f"{name}.json").write_text(json.dumps(obj))
    return tmp_path


TINY = {"kind": "mql4rec", "max_history": 3, "lr": 0.003, "schedule": "constant", "batch_size": 16,
        "max_epochs": 8, "eval_every": 4, "patience": 2, "num_beams": 12,
        "model": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
                  "dropout": 0.0}}


def test_end_to_end_writes_fused_and_single_modality_results(tmp_path, one_torch_thread):
    d = planted(tmp_path)
    outs = {"text": (d / "t" / "m.json", d / "t" / "k.jsonl"), "image": (d / "i" / "m.json", d / "i" / "k.jsonl")}
    res = run_mql4rec(d / "inter.json", d / "text.json", d / "image.json", d / "f" / "m.json", d / "f" / "k.jsonl",
                      d / "f" / "model", cfg=TINY, evaluation={"split": "test"}, checkpoint_dir=d / "f" / "ck",
                      modality_outputs=outs)
    for modality, (metrics, topk) in outs.items():
        single = read_json(metrics)
        assert single["method"] == f"mql4rec[{modality}]"
        assert single["HR@10"] >= 0.9  # next = item + 1 is learned in both id languages
        assert {k: single[k] for k in res["per_modality"][modality]} == res["per_modality"][modality]
        assert len(topk.read_text().splitlines()) == 60
    assert res["invalid_beam_fraction"] == 0.0 and res["HR@10"] >= 0.9
    vocab = read_json(d / "f" / "model" / "vocab.json")["tokens"]
    assert "<A_3>" in vocab and "<task_fusionseqrec_3>" in vocab and not any(t.startswith("<user_") for t in vocab)


def test_text_and_image_sets_must_not_share_tokens(tmp_path):
    d = planted(tmp_path)
    (d / "text.json").write_text(json.dumps({str(i): [f"<A_{i}>"] for i in range(12)}))
    with pytest.raises(InputError, match="also occur in the image id set"):
        run_mql4rec(d / "inter.json", d / "text.json", d / "image.json", d / "m.json", d / "k.jsonl", d / "model",
                    cfg=TINY, evaluation={}, checkpoint_dir=d / "ck")
