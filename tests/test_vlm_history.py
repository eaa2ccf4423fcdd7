"""Image-history VLM methods (unimp, vlm_candidates): prompts, leakage over REAL built prompts, the multi-image
collator, the focal loss against hand-computed values, MAP@12, the synthetic H&M data, determinism and resume."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from PIL import Image

from mmgenrec.methods.base import Evaluation, map_at_k, read_sequences
from mmgenrec.methods.vlm_history import HistoryCollator, item_fields, weighted_focal_loss

N = 8


@pytest.fixture
def data(tmp_path):
    """8 items, item i -> i+1 (mod 8); each item's image is a distinct solid colour (item 3 has none)."""
    inter = {str(u): [(u + k) % N for k in range(6)] for u in range(16)}
    (tmp_path / "img").mkdir()
    items = {}
    for i in range(N):
        Image.new("RGB", (40, 40), (30 * i, 255 - 30 * i, 100)).save(tmp_path / "img" / f"I{i}.jpg")
        items[str(i)] = {"title": f"Thing {i}", "brand": "B", "categories": f"Cat{i % 3}", "description": "",
                         "asin": f"I{i}", "image": None if i == 3 else f"I{i}.jpg"}
    (tmp_path / "inter.json").write_text(json.dumps(inter))
    (tmp_path / "item.json").write_text(json.dumps(items))
    return tmp_path, inter, items


def test_item_fields_truncates_like_unimp():
    item = {"categories": " ".join(f"c{k}" for k in range(30)), "brand": "", "title": "A  b"}
    text = item_fields(item)
    assert text == ("Category " + " ".join(f"c{k}" for k in range(20)) + " Price Unknown Brand Unknown Title A b")


def test_unimp_examples_exact_for_one_user(data):
    from mmgenrec.methods.unimp import DEFAULTS, build_examples

    d, _, items = data
    seqs = {"u": [0, 1, 2, 3, 4, 5, 6]}  # training part 0..4
    cfg = {**DEFAULTS, "max_history": 2, "max_images": 1, "tasks": {}}
    ex = build_examples(seqs, items, d / "img", cfg, N)
    assert [(e["history"], e["target"]) for e in ex] == [([0], 1), ([0, 1], 2), ([1, 2], 3), ([2, 3], 4)]
    assert all(e["weight"] == 2.0 and e["answer"] == f"<item_{e['target']}>" for e in ex)
    # one image: the last history item's (item 3 has none, so that example shows no image at all)
    assert [[p.split("/")[-1] for p in e["images"]] for e in ex] == [["I0.jpg"], ["I1.jpg"], ["I2.jpg"], []]


def _prompt_text(messages):
    return "".join(c.get("text", "<IMG>") for m in messages for c in m["content"])


@pytest.mark.parametrize("kind", ["unimp", "vlm_candidates"])
def test_no_prompt_shows_its_target(data, tiny, kind):
    """Over the real rendered prompts of train, valid and test: the target's token / title / image are not in
    the history part; vlm_candidates shows only the most recent history item's image."""
    from mmgenrec.models.loading import load_processor

    d, inter, items = data
    processor = load_processor(tiny)
    seqs = read_sequences(d / "inter.json")
    if kind == "unimp":
        from mmgenrec.methods import unimp as m

        cfg = {**m.DEFAULTS, "max_history": 3, "tasks": {"search": 1.0, "selection": 1.0}}
        train = m.build_examples(seqs, items, d / "img", cfg, N)
        built = [(e["messages"], e["images"], e["target"], e["history"], e["task"]) for e in train]
        for split in ("valid", "test"):
            for ex in Evaluation(split=split).examples(seqs):
                msgs, imgs = m.history_messages(ex.history[-3:], items, d / "img", 3, m.REC_Q)
                built.append((msgs, imgs, ex.target, ex.history[-3:], "rec"))
    else:
        from mmgenrec.methods import vlm_candidates as m

        cfg = {**m.DEFAULTS, "max_history": 3, "n_candidates": 4}
        train = m.build_examples(seqs, items, d / "img", cfg, N)
        built = [(e["messages"], e["images"], e["target"], e["history"], "select") for e in train]
        pop = list(range(N))
        for split, off in (("valid", 1), ("test", 2)):
            exs = Evaluation(split=split).examples(seqs)
            for ex, (h, c) in zip(exs, m.eval_items(exs, cfg, N, pop, off)):
                msgs, imgs = m.candidate_messages(h, c, items, d / "img", cfg["max_words"])
                built.append((msgs, imgs, ex.target, h, "select"))
    assert len(built) > 50
    for msgs, imgs, target, history, task in built:
        text = _prompt_text(msgs)
        rendered = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert rendered.count("<|image_pad|>") == len(imgs)
        assert f"I{target}.jpg" not in [p.split("/")[-1] for p in imgs]
        if kind == "unimp":
            shown = [int(x) for x in re.findall(r"<item_(\d+)>", text.split("Candidates:")[0])]
            assert shown == history and target not in shown
            assert f"Title Thing {target} " not in text
            if task == "selection":  # the candidate list is the task: the target once among them
                assert re.findall(r"<item_(\d+)>", text.split("Candidates:")[1]).count(str(target)) == 1
        else:
            hist_part = text.split("Candidates:")[0]
            assert f"Thing {target};" not in hist_part
            assert [p.split("/")[-1] for p in imgs] == ([f"I{history[-1]}.jpg"] if history[-1] != 3 else [])


def test_collator_several_images_and_answer_labels(data, tiny):
    from mmgenrec.models.loading import load_processor

    d, _, items = data
    processor = load_processor(tiny)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "a"}, {"type": "image"},
                                         {"type": "text", "text": "b"}]}]
    msgs1 = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "c"}]}]
    tok = processor.tokenizer
    rows = []
    for m, imgs in ((msgs, [d / "img/I0.jpg", d / "img/I1.jpg"]), (msgs1, [d / "img/I2.jpg"])):
        text = processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) + "X<|im_end|>"
        rows.append({"text": text, "images": [str(p) for p in imgs], "weight": 3.0,
                     "answer_ids": tok("X<|im_end|>", add_special_tokens=False)["input_ids"]})
    batch = HistoryCollator(processor)(rows)
    assert batch["image_grid_thw"].shape[0] == 3  # three images, flattened in prompt order
    for i, r in enumerate(rows):
        lab = batch["labels"][i]
        assert lab[lab != -100].tolist() == r["answer_ids"]
    assert batch["loss_weight"].tolist() == [3.0, 3.0]


def test_focal_loss_hand_computed():
    # one row, 3 positions; the labels at positions 1 and 2 are answer tokens (vocab 2)
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [9.0, 9.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    # position 0 predicts label 1 with p = 0.5; position 1 predicts label 0 with p = 3/4
    f1 = -(0.5 ** 2) * math.log(0.5)
    f2 = -(0.25 ** 2) * math.log(0.75)
    got = weighted_focal_loss(logits, labels, torch.tensor([2.0]), gamma=2.0)
    assert got.item() == pytest.approx(2.0 * (f1 + f2) / 2)
    ce = weighted_focal_loss(logits, labels, torch.tensor([1.0]), gamma=0.0)
    assert ce.item() == pytest.approx((-math.log(0.5) - math.log(0.75)) / 2)


def test_map_at_12_hand_computed(tmp_path):
    assert map_at_k([5, 7, 9], 7) == 0.5
    assert map_at_k(list(range(20)), 12) == 0.0  # rank 13: outside the first 12
    seqs = {"a": [1, 2, 3], "b": [4, 5, 6]}
    ev = Evaluation(top_k=2, map_k=12)
    out = ev.write(tmp_path / "m.json", tmp_path / "t.jsonl", ev.examples(seqs),
                   {"0": [[9, 8, 7, 3], [6] + list(range(20, 40))]}, {"method": "x"})
    assert out["MAP@12"] == pytest.approx((1 / 4 + 1) / 2)
    assert out["HR@10"] == 0.5  # the written lists stay cut at top_k=2


def test_synthetic_hm_prepares_and_is_deterministic(tmp_path):
    from mmgenrec.data.hm import prepare_hm
    from mmgenrec.data.synthetic_hm import synthesize_hm

    a = synthesize_hm(tmp_path / "a", n_groups=3, items_per_group=5, n_customers=20, seed=1)
    synthesize_hm(tmp_path / "b", n_groups=3, items_per_group=5, n_customers=20, seed=1)
    for f in ("articles.csv", "customers.csv", "transactions_train.csv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert a["articles"] == 15 and a["customers"] == 20
    first = (tmp_path / "a/articles.csv").read_text().splitlines()[1].split(",")[0]
    assert len(first) == 10 and first.startswith("0") and (tmp_path / "a/images" / first[:3] / f"{first}.jpg").is_file()
    stats = prepare_hm(*(tmp_path / "a" / f for f in ("articles.csv", "customers.csv", "transactions_train.csv")),
                       tmp_path / "a/images", tmp_path / "p", "h", min_interactions=3)
    items = json.loads((tmp_path / "p/h.item.json").read_text())
    assert stats["n_users"] > 0 and all(r["image"] for r in items.values())


def _run(kind, d, tiny, out, **extra):
    from mmgenrec.methods.unimp import run_unimp
    from mmgenrec.methods.vlm_candidates import run_vlm_candidates

    fn = run_unimp if kind == "unimp" else run_vlm_candidates
    cfg = {"epochs": 1, "batch_size": 8, "lr": 5e-3, "max_history": 3, "train_users": 8, "valid_users": 4, **extra}
    if kind == "vlm_candidates":
        cfg["n_candidates"] = 4
    return fn(tiny, d / "inter.json", d / "item.json", d / "img", out / "m.json", out / "t.jsonl", cfg=cfg,
              evaluation={"split": "test", "top_k": 5}, checkpoint_dir=out / "ckpt", device="cpu")


@pytest.mark.parametrize("kind", ["unimp", "vlm_candidates"])
def test_deterministic_and_resumes(data, tiny, one_torch_thread, tmp_path, kind):
    """Two runs give identical files; a run killed after its first checkpoint, rerun, gives the same files."""
    from transformers import TrainerCallback

    d, _, _ = data
    a = _run(kind, d, tiny, tmp_path / "a", save_steps=2)
    _run(kind, d, tiny, tmp_path / "b", save_steps=2)
    assert (tmp_path / "a/t.jsonl").read_text() == (tmp_path / "b/t.jsonl").read_text()
    assert a["invalid_beam_fraction"] == 0.0 and a["best_epoch"] == 1

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    import mmgenrec.methods.vlm_history as vh

    orig = vh.FocalTrainer.__init__

    def patched(self, *args, **kw):
        kw["callbacks"] = [*kw.get("callbacks", []), Kill()]
        orig(self, *args, **kw)

    vh.FocalTrainer.__init__ = patched
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(kind, d, tiny, tmp_path / "c", save_steps=2)
    finally:
        vh.FocalTrainer.__init__ = orig
    assert (tmp_path / "c/ckpt/trainer/checkpoint-2").is_dir()
    c = _run(kind, d, tiny, tmp_path / "c", save_steps=2)
    assert c["resumed_from"].endswith("checkpoint-2")
    assert (tmp_path / "c/t.jsonl").read_text() == (tmp_path / "a/t.jsonl").read_text()
