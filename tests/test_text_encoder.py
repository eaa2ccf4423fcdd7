"""The lm_text view (mmgenrec.embed.text_encoder) against hand-computed vectors from the model's own hidden states,
and the text-LM processor shim (mmgenrec.models.text_lm)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmgenrec.embed.text_encoder import embed_lm_text
from mmgenrec.io import InputError
from mmgenrec.models.text_lm import PLAIN_TEMPLATE, TextProcessor
from mmgenrec.models.tiny import build_tiny_qwen2

CORPUS = ["Red Acoustic Guitar A01", "A warm guitar for stage and studio.", "Blue Drum Kit B07 with cymbals",
          "Below is an instruction that describes a task. ### Instruction: ### Response:"] * 5


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory, one_torch_thread):
    path = tmp_path_factory.mktemp("lm") / "tiny-qwen2"
    return build_tiny_qwen2(path, CORPUS, vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                            intermediate_size=64, seed=0)


# ids deliberately not in file order; item 1 has no description, item 2 a list-valued one
ITEMS = {"2": {"title": "Blue Drum Kit B07", "description": ["A drum kit", "with cymbals."]},
         "0": {"title": "Red Acoustic Guitar A01", "description": "A warm guitar for stage and studio, long text."},
         "1": {"title": "Guitar", "description": ""}}


def hand_vector(model_dir, texts):
    """Each field alone (batch of one, no padding) through AutoModel: mean of its last hidden states; then the mean
    over the fields."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            out.append(model(**enc).last_hidden_state[0].mean(0).numpy())
    return np.mean(out, axis=0)


def test_fields_pooled_separately_then_averaged_over_the_present_ones(text_lm, tmp_path):
    item_json = tmp_path / "item.json"
    item_json.write_text(json.dumps(ITEMS))
    meta = embed_lm_text(text_lm, item_json, tmp_path / "v.npy", tmp_path / "v.json", batch_size=4, device="cpu")
    emb = np.load(tmp_path / "v.npy")
    assert emb.dtype == np.float32 and emb.shape == (3, 32)
    expected = [hand_vector(text_lm, ["Red Acoustic Guitar A01", "A warm guitar for stage and studio, long text."]),
                hand_vector(text_lm, ["Guitar"]),  # no description: the title alone
                hand_vector(text_lm, ["Blue Drum Kit B07", "A drum kit, with cymbals."])]
    for row, exp in enumerate(expected):  # rows in item-id order
        np.testing.assert_allclose(emb[row], exp, atol=2e-5, rtol=1e-4)
    assert meta["items_per_field_count"] == {"1": 1, "2": 2}
    # not the mean over a fixed two fields (the absent one as zeros would halve item 1)
    assert not np.allclose(emb[1], expected[1] / 2, atol=1e-3)


def test_padding_side_and_batch_size_do_not_change_the_vectors(text_lm, tmp_path):
    item_json = tmp_path / "item.json"
    item_json.write_text(json.dumps(ITEMS))
    runs = {}
    for side, bs in (("right", 5), ("left", 5), ("right", 1)):
        embed_lm_text(text_lm, item_json, tmp_path / f"{side}{bs}.npy", tmp_path / "m.json", batch_size=bs,
                      padding_side=side, device="cpu")
        runs[side, bs] = np.load(tmp_path / f"{side}{bs}.npy")
    np.testing.assert_allclose(runs["left", 5], runs["right", 5], atol=2e-5)
    np.testing.assert_allclose(runs["right", 1], runs["right", 5], atol=2e-5)


def test_bad_items_are_clear_errors(text_lm, tmp_path):
    item_json = tmp_path / "item.json"
    item_json.write_text(json.dumps({"0": {"title": "A"}, "1": {"title": "", "description": None}}))
    with pytest.raises(InputError, match=r"item\.json: item 1 has none of the fields"):
        embed_lm_text(text_lm, item_json, tmp_path / "v.npy", tmp_path / "v.json", device="cpu")
    item_json.write_text(json.dumps({"0": {"title": "A"}, "2": {"title": "B"}}))
    with pytest.raises(InputError, match="without gaps"):
        embed_lm_text(text_lm, item_json, tmp_path / "v.npy", tmp_path / "v.json", device="cpu")
    assert not (tmp_path / "v.npy").exists()


def test_text_processor_plain_and_chat_templates(text_lm):
    from transformers import AutoTokenizer

    from mmgenrec.models.tiny import TEXT_CHAT_TEMPLATE

    msgs = [{"role": "user", "content": [{"type": "text", "text": "Which item is next?"}]}]
    plain = TextProcessor(AutoTokenizer.from_pretrained(str(text_lm)))
    assert plain.apply_chat_template(msgs, add_generation_prompt=True) == PLAIN_TEMPLATE.format(
        instruction="Which item is next?")
    assert PLAIN_TEMPLATE.endswith("### Response:")
    assert plain.answer_end == plain.tokenizer.eos_token
    tok = AutoTokenizer.from_pretrained(str(text_lm))
    tok.chat_template = TEXT_CHAT_TEMPLATE
    chat = TextProcessor(tok)
    assert chat.apply_chat_template(msgs, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhich item is next?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert chat.answer_end == "<|im_end|>"
    with pytest.raises(ValueError, match="image"):
        plain.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}])
