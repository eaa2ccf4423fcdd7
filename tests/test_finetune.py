"""Multitask finetuning on the tiny Qwen2.5-VL: tasks/templates, answer-only labels with images under both padding
sides, exact freezing with weight decay, resume after a kill, multi-stage training, adapter merging."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch
from PIL import Image

from mmgenrec.finetune.data import MultimodalCollator, MultiTaskDataset, build_examples
from mmgenrec.finetune.merge import merge_for_category, merge_lora
from mmgenrec.finetune.train import finetune, prepare_model
from mmgenrec.models.item_tokens import item_vocabulary
from mmgenrec.models.loading import load_finetuned, load_vlm
from mmgenrec.prompts import (
    ENRICHED_FIELDS, SEQREC_TEMPLATES, TASKS, TEMPLATES, enrich_answer, parse_enrich_answer, render, seqrec_messages,
    task_messages,
)
from preempt import KillAt

LEVELS, K = 2, 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 items (2-level IDs, titles, images for even items, enrichment for all, 16 in the train split), 30 users."""
    d = tmp_path_factory.mktemp("mt")
    rng = random.Random(0)
    codes = rng.sample([(a, b) for a in range(K) for b in range(K)], 24)
    index = {str(i): [f"<a_{a}>", f"<b_{b}>"] for i, (a, b) in enumerate(codes)}
    (d / "images").mkdir()
    items, enriched = {}, {}
    for i in range(24):
        items[str(i)] = {"title": f"Guitar pedal {i}", "description": f"A pedal number {i} for tone.",
                         "brand": "Boss", "image": f"{i}.jpg" if i % 2 == 0 else ""}
        if i % 2 == 0:
            Image.new("RGB", (40 + i, 40), (10 * i, 100, 200)).save(d / "images" / f"{i}.jpg")
        enriched[str(i)] = {"enhanced_title": f"Boss pedal {i}", "tags": ["pedal", f"t{i}"],
                            "highlights": ["compact"], "characteristics": {"colour": "blue"}, "has_image": i % 2 == 0}
    inter = {str(u): [(u + t) % 24 for t in range(7)] for u in range(30)}
    split = {"train": [str(i) for i in range(16)], "heldout": [str(i) for i in range(16, 24)]}
    for name, obj in (("index", index), ("item", items), ("inter", inter), ("enriched", enriched), ("split", split)):
        (d / f"{name}.json").write_text(json.dumps(obj))
    return d


def files(d):
    return dict(index_json=d / "index.json", inter_json=d / "inter.json", item_json=d / "item.json",
                image_dir=d / "images", enriched_json=d / "enriched.json", split_json=d / "split.json",
                codebook_size=K)


# --- prompts -----------------------------------------------------------------------------------------------------

def test_every_task_has_several_templates_and_renders(tiny):
    _, processor = load_vlm(tiny, device="cpu")
    item = {"title": "Boss DS-1", "description": "Distortion."}
    for task in TASKS:
        assert len(TEMPLATES[task]) >= 3
        texts = set()
        for t in range(len(TEMPLATES[task])):
            msgs, answer = task_messages(task, t, history=["<a_1><b_2>"], sid="<a_3><b_4>", item=item,
                                         enriched={"enhanced_title": "x", "tags": ["y"]}, with_image=True)
            prompt, full = render(processor, msgs, answer)
            assert full == prompt + answer + "<|im_end|>" and prompt.endswith("<|im_start|>assistant\n")
            texts.add(prompt)
        assert len(texts) == len(TEMPLATES[task])  # different wording per template
    # the existing API is unchanged
    assert seqrec_messages(["<a_1>"], 0)[0]["content"][0]["text"] == SEQREC_TEMPLATES[0].format(history="<a_1>")
    assert task_messages("mmindex2item", 0, sid="<a_1>", item=item)[1] == "Boss DS-1"
    assert task_messages("mmindex2item", 1, sid="<a_1>", item=item)[1] == "Title: Boss DS-1\nDescription: Distortion."
    with pytest.raises(ValueError, match="unknown task"):
        task_messages("nope", 0)


def test_enrich_answer_round_trips():
    e = {"enhanced_title": "Boss DS-1 Distortion", "tags": ["pedal", "distortion"], "highlights": ["metal case"],
         "characteristics": {"colour": "orange", "power": "9V"}}
    parsed = parse_enrich_answer(enrich_answer(e))
    assert parsed == {"enhanced_title": "Boss DS-1 Distortion", "tags": ["pedal", "distortion"],
                      "highlights": ["metal case"], "characteristics": ["colour: orange", "power: 9V"]}
    assert set(parsed) == set(ENRICHED_FIELDS)
    assert parse_enrich_answer("garbage")["tags"] == []


def test_item_vocabulary_follows_the_index_levels():
    four = {0: ["<a_1>", "<b_2>", "<c_3>", "<d_4>"]}
    five = {0: ["<a_1>", "<b_2>", "<c_3>", "<d_4>", "<e_0>"], 1: ["<a_1>", "<b_2>", "<c_3>", "<d_4>", "<e_40>"]}
    assert len(item_vocabulary(four, 32)) == 4 * 32
    v5 = item_vocabulary(five, 32)
    assert len(v5) == 5 * 32 + 1 and v5[-1] == "<e_40>" and v5[4 * 32] == "<e_0>"  # suffix code beyond the codebook
    assert item_vocabulary(four, 2, ["<z_0>"])[0] == "<z_0>"


# --- examples and labels -------------------------------------------------------------------------------------------

def test_task_mix_templates_and_enrich_split(data, caplog):
    index = {int(k): v for k, v in json.loads((data / "index.json").read_text()).items()}
    kw = dict(index=index, sequences=json.loads((data / "inter.json").read_text()),
              items=json.loads((data / "item.json").read_text()), image_dir=data / "images",
              enriched=json.loads((data / "enriched.json").read_text()), train_items={str(i) for i in range(16)})
    tasks = {"seqrec": {"weight": 1.0, "templates": [1, 2]}, "mmitem2index": {"weight": 0.5, "templates": [0]},
             "mmindex2item": {"weight": 2.0}, "mmitemenrich": {"weight": 1.0, "templates": [2]}}
    ex = build_examples(tasks, seed=3, **kw)
    by = {t: [e for e in ex if e["task"] == t] for t in TASKS}
    assert len(by["seqrec"]) == 30 * 4  # 7 items, last two held out -> 4 pairs per user
    assert len(by["mmitem2index"]) == 12 and len(by["mmindex2item"]) == 48
    assert {e["template"] for e in by["seqrec"]} == {1, 2} and {e["template"] for e in by["mmitem2index"]} == {0}
    assert {e["template"] for e in by["mmindex2item"]} == {0, 1, 2}
    # enrichment: only train-split items, with their enriched answer; image only where the item has one
    assert len(by["mmitemenrich"]) == 16
    for e in by["mmitemenrich"]:
        assert "Enhanced title: Boss pedal" in e["answer"]
        assert int(e["answer"].split("Boss pedal ")[1].split("\n")[0]) < 16
    assert all((e["image"] is not None) == (int(e["image"].rsplit("/", 1)[1][:-4]) % 2 == 0 if e["image"] else False)
               for e in by["mmitem2index"])
    assert any(e["image"] for e in by["mmitemenrich"]) and not any(e["image"] for e in by["seqrec"] + by["mmindex2item"])
    # seeded: same seed, same examples; another task's weight does not change this task's examples
    assert build_examples(tasks, seed=3, **kw) == ex
    other = build_examples(dict(tasks, mmindex2item={"weight": 0.0}), seed=3, **kw)
    assert [e for e in other if e["task"] == "seqrec"] == by["seqrec"]
    assert build_examples(tasks, seed=4, **kw) != ex
    with caplog.at_level(logging.INFO):
        no_enrich = build_examples(tasks, seed=3, **dict(kw, enriched=None))
    assert not any(e["task"] == "mmitemenrich" for e in no_enrich)
    assert "mmitemenrich skipped" in caplog.text
    with pytest.raises(ValueError, match="template ids"):
        build_examples({"seqrec": {"weight": 1, "templates": [9]}}, **kw)


def test_labels_cover_only_answers_with_images_left_and_right(tiny, data):
    index = {int(k): v for k, v in json.loads((data / "index.json").read_text()).items()}
    model, processor, _ = prepare_model(tiny, index, item_vocabulary(index, K), device="cpu")
    model.eval()
    ex = build_examples({"mmitem2index": {"weight": 0.25}, "mmitemenrich": {"weight": 0.25},
                         "mmindex2item": {"weight": 0.1}, "seqrec": {"weight": 0.02}}, index=index,
                        sequences=json.loads((data / "inter.json").read_text()),
                        items=json.loads((data / "item.json").read_text()), image_dir=data / "images",
                        enriched=json.loads((data / "enriched.json").read_text()), seed=1)
    ds = MultiTaskDataset(processor, ex)
    rows = [ds[i] for i in range(len(ds))]
    assert sum(r["image"] is not None for r in rows) >= 2 and any(r["image"] is None for r in rows)
    right = MultimodalCollator(processor, "right")(rows)
    left = MultimodalCollator(processor, "left")(rows)
    assert {"pixel_values", "image_grid_thw", "mm_token_type_ids"} <= set(right)
    assert (right["attention_mask"][:, 0] == 1).all() and (left["attention_mask"][:, -1] == 1).all()
    assert (right["attention_mask"] == 0).any()  # padding really happens
    tok = processor.tokenizer
    for batch in (left, right):
        assert int((batch["labels"] != -100).sum()) == sum(len(r["answer_ids"]) for r in rows)
        for i, e in enumerate(ex):  # the labelled tokens decode to exactly the answer + end of turn
            got = batch["labels"][i][batch["labels"][i] != -100]
            assert tok.decode(got) == e["answer"] + "<|im_end|>"
        image_tok = model.config.image_token_id
        assert not (batch["labels"] == image_tok).any()
    with torch.no_grad():
        loss_r = model(**right).loss
        loss_l = model(**left).loss
    torch.testing.assert_close(loss_l, loss_r, atol=1e-5, rtol=1e-5)


# --- training: freezing, resume, stages -----------------------------------------------------------------------------

MIX = {"seqrec": {"weight": 0.5, "templates": [0, 1]}, "mmitem2index": {"weight": 1.0},
       "mmindex2item": {"weight": 0.5}, "mmitemenrich": {"weight": 0.5}}
TRAIN = dict(batch_size=8, lr=5e-3, weight_decay=0.1, lora_dropout=0.1, device="cpu", logging_steps=1, seed=5)


def adapter_tensors(d):
    from safetensors.torch import load_file

    return load_file(str(d / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def reference(tiny, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    finetune(tiny, root / "model", tasks=MIX, max_steps=6, save_steps=2, **files(data), **TRAIN)
    return root / "model"


def test_multitask_training_freezes_exactly_and_saves_small(reference, tiny):
    log = json.loads((reference / "train_log.json").read_text())
    assert set(log["stages"][0]["tasks"]) == set(TASKS) and all(v > 0 for v in log["stages"][0]["tasks"].values())
    assert log["steps"] == 6 and log["curve"][-1]["loss"] < log["curve"][0]["loss"]
    meta = json.loads((reference / "token_meta.json").read_text())
    assert meta["n_new_tokens"] == LEVELS * K and meta["levels"] == LEVELS
    assert not (reference.parent / "checkpoints").exists()  # removed after success
    tensors = adapter_tensors(reference)
    assert not [k for k, v in tensors.items() if max(v.shape) >= meta["n_base_tokens"]]
    base, _ = load_vlm(tiny, device="cpu")
    model, _, _ = load_finetuned(tiny, reference, device="cpu")
    n = meta["n_base_tokens"]
    # weight decay 0.1 and 6 AdamW steps: the original rows of both matrices are bit-identical, the new rows moved
    assert torch.equal(model.get_input_embeddings().weight[:n], base.get_input_embeddings().weight[:n])
    assert torch.equal(model.get_output_embeddings().weight[:n], base.get_output_embeddings().weight[:n])
    vision = {k: v for k, v in model.state_dict().items() if k.startswith("model.visual")}
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in vision.items())


def test_killed_run_resumes_to_the_same_parameters(reference, tiny, data, tmp_path):
    out = tmp_path / "m" / "model"
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny, out, tasks=MIX, max_steps=6, save_steps=2, callbacks=(KillAt(4),), **files(data), **TRAIN)
    ckpt = tmp_path / "m" / "checkpoints"
    assert not out.exists() and (ckpt / "stage0" / "checkpoint-4").is_dir()
    finetune(tiny, out, tasks=MIX, max_steps=6, save_steps=2, **files(data), **TRAIN)  # the rerun
    log = json.loads((out / "train_log.json").read_text())
    assert log["stages"][0]["resumed_from"].endswith("checkpoint-4")
    a, b = adapter_tensors(reference), adapter_tensors(out)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    ref_curve = json.loads((reference / "train_log.json").read_text())["curve"]
    assert [round(c["loss"], 5) for c in log["curve"] if c["step"] > 4] == \
        [round(c["loss"], 5) for c in ref_curve if c["step"] > 4]


def test_checkpoints_from_other_settings_are_discarded(tiny, data, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny, out, tasks=MIX, max_steps=4, save_steps=2, callbacks=(KillAt(2),), **files(data), **TRAIN)
    finetune(tiny, out, tasks=MIX, max_steps=4, save_steps=2, **files(data), **dict(TRAIN, lr=1e-3))
    assert json.loads((out / "train_log.json").read_text())["stages"][0]["resumed_from"] is None


def test_multistage_trains_alignment_then_seqrec(tiny, data, tmp_path):
    out = tmp_path / "model"
    stages = [{"tasks": ["mmitem2index", "mmindex2item"], "epochs": 1}, {"tasks": ["seqrec"], "epochs": 1}]
    finetune(tiny, out, tasks=MIX, stages=stages, method="ours_multistage", **files(data), **TRAIN)
    log = json.loads((out / "train_log.json").read_text())
    assert [sorted(s["tasks"]) for s in log["stages"]] == [["mmindex2item", "mmitem2index"], ["seqrec"]]
    assert log["stages"][0]["tasks"]["mmitem2index"] == 24 and log["stages"][1]["tasks"]["seqrec"] == 60
    assert log["stages"][0]["steps"] == 5 and log["stages"][1]["steps"] == 8  # ceil(36/8), ceil(60/8)
    meta = json.loads((out / "token_meta.json").read_text())
    assert meta["method"] == "ours_multistage" and meta["stages"] == [["mmindex2item", "mmitem2index"], ["seqrec"]]
    with pytest.raises(ValueError, match="not configured"):
        finetune(tiny, tmp_path / "x", tasks={"seqrec": {}}, stages=[{"tasks": ["mmitem2index"]}], **files(data),
                 **TRAIN)


# --- merging -------------------------------------------------------------------------------------------------------

def test_merge_is_the_weighted_average_of_lora_updates(reference, tiny, tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other"
    import shutil

    shutil.copytree(reference, other)
    t = adapter_tensors(reference)
    gen = torch.Generator().manual_seed(0)
    perturbed = {k: (v + 0.05 * torch.randn(v.shape, generator=gen) if "lora_" in k or "token" in k else v)
                 for k, v in t.items()}
    save_file(perturbed, str(other / "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((reference / "adapter_config.json").read_text())
    s = cfg["lora_alpha"] / cfg["r"]
    merged_dir = tmp_path / "merged"
    rec = merge_lora({"A": reference, "B": other}, {"A": 0.25, "B": 0.75}, "B", merged_dir)
    assert rec["merged_rank"] == 2 * cfg["r"]
    m = adapter_tensors(merged_dir)
    mcfg = json.loads((merged_dir / "adapter_config.json").read_text())
    key = next(k for k in m if ".q_proj.lora_A." in k)
    kb = key.replace("lora_A", "lora_B")
    want = 0.25 * s * t[kb] @ t[key] + 0.75 * s * perturbed[kb] @ perturbed[key]
    got = (mcfg["lora_alpha"] / mcfg["r"]) * m[kb] @ m[key]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    tok_keys = [k for k in m if "trainable_tokens_delta" in k]
    assert tok_keys and all(torch.equal(m[k], perturbed[k]) for k in tok_keys)  # token rows from the target
    assert json.loads((merged_dir / "token_meta.json").read_text())["method"] == "ours_merged"
    # merging an adapter with itself (uniform) loads and predicts exactly like the adapter
    same = tmp_path / "same"
    merge_for_category({"A": reference, "A2": reference}, "A", same, weighting="uniform")
    ids = {"input_ids": torch.tensor([[3, 4, 5, 600, 610]])}
    m1, _, _ = load_finetuned(tiny, reference, device="cpu")
    m2, _, _ = load_finetuned(tiny, same, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(m2(**ids).logits, m1(**ids).logits, atol=1e-5, rtol=1e-5)


# --- scale: two processes, DeepSpeed config ---------------------------------------------------------------------

@pytest.mark.slow
def test_two_process_cpu_run_trains(tiny, data, tmp_path):
    """torchrun with 2 workers (DDP over gloo on CPU): the data is sharded, rank 0 saves, the rows stay frozen."""
    from mmgenrec.finetune.launch import run_finetune

    out = tmp_path / "model"
    spec = dict(model_dir=str(tiny), out_dir=str(out), tasks={"seqrec": {"weight": 1.0}, "mmitem2index": {"weight": 1.0}},
                epochs=1, **{k: str(v) if hasattr(v, "is_file") else v for k, v in files(data).items()}, **TRAIN)
    run_finetune(spec, 2, cpu=True)
    log = json.loads((out / "train_log.json").read_text())
    assert log["world_size"] == 2
    n = log["examples"]
    assert n == 120 + 24 and log["steps"] == -(-n // (2 * TRAIN["batch_size"]))  # 2 x 8 examples per step
    assert log["last_loss"] < log["first_loss"]
    base, _ = load_vlm(tiny, device="cpu")
    model, _, meta = load_finetuned(tiny, out, device="cpu")
    k = meta["n_base_tokens"]
    assert torch.equal(model.get_input_embeddings().weight[:k], base.get_input_embeddings().weight[:k])
    deltas = [v for key, v in adapter_tensors(out).items() if "trainable_tokens_delta" in key]
    assert deltas and all(float(d.abs().max()) > 0 for d in deltas)  # the new rows trained


def test_deepspeed_config_is_valid():
    """The shipped ZeRO-2 config as the Trainer builds it: every "auto" is filled from the training arguments
    (batch size, accumulation, clipping, bf16) by transformers' config builder, and DeepSpeed accepts the result."""
    from pathlib import Path

    pytest.importorskip("deepspeed", reason="deepspeed is an optional extra")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    cfg = json.loads((Path(__file__).resolve().parents[1] / "config" / "deepspeed_zero2.json").read_text())
    args = TrainingArguments(output_dir="unused", per_device_train_batch_size=3, gradient_accumulation_steps=4,
                             max_grad_norm=0.5, bf16=True, use_cpu=True, report_to=[])
    built = HfTrainerDeepSpeedConfig(cfg)
    built.trainer_config_process(args)
    out = built.config
    assert out["train_micro_batch_size_per_gpu"] == 3 and out["gradient_accumulation_steps"] == 4
    assert out["train_batch_size"] == 3 * 4 * args.world_size and out["gradient_clipping"] == 0.5
    assert out["bf16"]["enabled"] is True
    out["zero_optimization"]["reduce_bucket_size"] = 5e8  # filled from the model's hidden size at train time
    parsed = DeepSpeedConfig(out)
    assert parsed.zero_optimization_stage == cfg["zero_optimization"]["stage"] and parsed.bfloat16_enabled
    assert parsed.train_micro_batch_size_per_gpu == 3 and parsed.gradient_accumulation_steps == 4
