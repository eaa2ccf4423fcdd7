"""Tiny Qwen2.5-VL built locally, loaded with from_pretrained; LoRA + item tokens train exactly what they should."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image

from mmgenrec.finetune.data import MultimodalCollator, MultiTaskDataset, build_examples
from mmgenrec.finetune.train import finetune_seqrec, prepare_model
from mmgenrec.models.item_tokens import LORA_TARGET_REGEX
from mmgenrec.models.loading import load_finetuned, load_vlm
from mmgenrec.prompts import item_messages

LEVELS, K = 2, 8
TOKENS = [f"<{chr(97 + lv)}_{c}>" for lv in range(LEVELS) for c in range(K)]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """30 items with unique 2-level IDs; 40 users walking item i -> i+1 (learnable)."""
    d = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    codes = rng.sample([(a, b) for a in range(K) for b in range(K)], 30)
    index = {str(i): [f"<a_{a}>", f"<b_{b}>"] for i, (a, b) in enumerate(codes)}
    inter = {}
    for u in range(40):
        start = rng.randrange(30)
        inter[str(u)] = [(start + t) % 30 for t in range(8)]
    (d / "index.json").write_text(json.dumps(index))
    (d / "inter.json").write_text(json.dumps(inter))
    return d, {int(k): v for k, v in index.items()}, inter


def test_tiny_model_loads_like_the_real_one(tiny):
    model, processor = load_vlm(tiny, device="cpu")
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    # padded like the real checkpoint: the least multiple of 64 that holds every token (152064 for 151665)
    assert model.config.text_config.vocab_size == -(-len(processor.tokenizer) // 64) * 64
    assert model.get_input_embeddings().weight.shape[0] == model.config.text_config.vocab_size
    msgs = item_messages("Title: Boss Fuzz Effects Pedal", True, "")
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text and text.startswith("<|im_start|>")
    batch = processor(text=[text], images=[Image.new("RGB", (64, 64), (200, 30, 30))], return_tensors="pt")
    assert {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"} <= set(batch)
    n_image_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(batch["image_grid_thw"].prod()) // 4 > 0
    out = model(**batch)
    assert torch.isfinite(out.logits).all()


def test_lora_targets_only_the_language_model(tiny, toy_data):
    _, index, _ = toy_data
    model, _, meta = prepare_model(tiny, index, TOKENS, device="cpu")
    lora = [n for n, _ in model.named_parameters() if "lora_A" in n]
    assert lora and all("language_model" in n for n in lora)
    assert not any("visual" in n for n in lora)
    kinds = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in lora}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "token_adapter" in n for n in trainable)
    assert sum("token_adapter" in n for n in trainable) == (1 if meta["tied_embeddings"] else 2)
    emb = model.get_input_embeddings()
    rows = emb.token_adapter.trainable_tokens_delta["default"].shape[0]
    assert rows == len(TOKENS) == meta["n_new_tokens"]
    assert LORA_TARGET_REGEX.startswith(".*language_model")


def test_left_and_right_padding_give_the_same_loss(tiny, toy_data):
    _, index, inter = toy_data
    model, processor, _ = prepare_model(tiny, index, TOKENS, device="cpu")
    model.eval()
    ex = build_examples({"seqrec": {"templates": [0, 1, 2]}}, index=index, sequences=inter, max_history=5, seed=1)
    ds = MultiTaskDataset(processor, ex[:6])
    examples = [ds[i] for i in range(len(ds))]
    assert len({len(e["text"]) for e in examples}) > 1  # padding actually happens
    with torch.no_grad():
        right = model(**MultimodalCollator(processor, "right")(examples)).loss
        left = model(**MultimodalCollator(processor, "left")(examples)).loss
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    batch = MultimodalCollator(processor, "left")(examples)
    # the loss covers exactly the answer: LEVELS id tokens + <|im_end|> per example
    assert int((batch["labels"] != -100).sum()) == len(examples) * (LEVELS + 1)


@pytest.fixture(scope="module")
def trained(tiny, toy_data, tmp_path_factory):
    d, _, _ = toy_data
    out = tmp_path_factory.mktemp("ft") / "model"
    model, processor = finetune_seqrec(tiny, d / "inter.json", d / "index.json", out, all_tokens=TOKENS,
                                       epochs=3, batch_size=16, lr=5e-3, device="cpu", logging_steps=1)
    return out, model, processor


def test_finetune_saves_adapter_not_full_matrices(trained, tiny):
    out, _, _ = trained
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "token_meta.json", "train_log.json",
            "tokenizer.json"} <= files
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    meta = json.loads((out / "token_meta.json").read_text())
    big = {k: s for k, s in shapes.items() if max(s) >= meta["n_base_tokens"]}
    assert not big, f"full embedding matrices saved: {big}"
    deltas = {k: s for k, s in shapes.items() if "token_adapter" in k}
    assert deltas and all(s[0] == len(TOKENS) for s in deltas.values())
    log = json.loads((out / "train_log.json").read_text())
    assert log["last_loss"] < log["first_loss"]
    assert log["trainable_non_lora"] and all("token_adapter" in n for n in log["trainable_non_lora"])


def test_original_rows_bit_identical_and_reload_equals_trained(trained, tiny):
    out, model, processor = trained
    base, _ = load_vlm(tiny, device="cpu")
    merged, proc2, meta = load_finetuned(tiny, out, device="cpu")
    n = meta["n_base_tokens"]
    assert len(proc2.tokenizer) == n + len(TOKENS)
    assert merged.get_input_embeddings().weight.shape[0] == len(proc2.tokenizer)
    assert torch.equal(merged.get_input_embeddings().weight[:n], base.get_input_embeddings().weight[:n])
    assert torch.equal(merged.get_output_embeddings().weight[:n], base.get_output_embeddings().weight[:n])
    assert not torch.equal(merged.get_input_embeddings().weight[n:], model.base_model.model.get_input_embeddings()
                           .token_adapter.base_layer.weight[n:])  # the new rows did train
    ids = proc2.tokenizer("Given the interaction sequence <a_1><b_2>, recommend the next item.",
                          return_tensors="pt")
    model.eval()
    with torch.no_grad():
        a = model(**ids).logits
        b = merged(**ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
