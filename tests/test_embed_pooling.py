"""Item-embedding pooling (issue 18, item 4): ``content`` pooling averages over exactly the item's image and text
tokens, never the shared system prompt or chat markup; ``prompt`` pooling (the old behaviour) over everything."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmgenrec.embed.embed import content_mask, embed_batch, embed_items
from mmgenrec.models.loading import load_vlm
from mmgenrec.prompts import item_messages

TEXTS = ["Guitar pedal 3", "A compact distortion pedal for tone", "Boss"]


@pytest.fixture(scope="module")
def vlm(tiny):
    return load_vlm(tiny, device="cpu")


def images():
    return [Image.new("RGB", (60, 60), (200, 10, 10)), None, Image.new("RGB", (84, 56), (0, 90, 250))]


@pytest.mark.parametrize("side", ["left", "right"])
def test_content_mask_selects_exactly_the_image_and_text_tokens(vlm, side):
    _, processor = vlm
    imgs = images()
    prompts = [processor.apply_chat_template(item_messages(t, im is not None, ""), tokenize=False,
                                             add_generation_prompt=False) for t, im in zip(TEXTS, imgs)]
    assert all(p.startswith("<|im_start|>system\nYou are a helpful assistant.") for p in prompts)  # shared part
    batch = processor(text=prompts, images=[im for im in imgs if im], padding=True, padding_side=side,
                      return_tensors="pt")
    mask = content_mask(batch["input_ids"], batch["attention_mask"], processor.tokenizer)
    tok = processor.tokenizer
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    n_pads = [int((row == image_pad).sum()) for row in batch["input_ids"]]
    assert n_pads[0] > 0 and n_pads[1] == 0 and n_pads[2] > 0
    for i, text in enumerate(TEXTS):
        kept = batch["input_ids"][i][mask[i]]
        assert tok.decode(kept) == "<|image_pad|>" * n_pads[i] + text
        assert int(mask[i].sum()) == n_pads[i] + len(tok(text, add_special_tokens=False)["input_ids"])


def prompt_positions_offset(model, processor, texts, imgs, offset):
    """Run embed_batch for both poolings while a hook adds ``offset`` to the last hidden layer everywhere but at
    the item's own tokens (system prompt, chat markup, padding)."""
    prompts = [processor.apply_chat_template(item_messages(t, im is not None, ""), tokenize=False,
                                             add_generation_prompt=False) for t, im in zip(texts, imgs)]
    batch = processor(text=prompts, images=[im for im in imgs if im], padding=True, return_tensors="pt")
    outside = ~content_mask(batch["input_ids"], batch["attention_mask"], processor.tokenizer)
    norm = model.model.language_model.norm

    def hook(module, args, out):
        return out + offset * outside.unsqueeze(-1).to(out.dtype)

    handle = norm.register_forward_hook(hook)
    try:
        return {p: embed_batch(model, processor, texts, imgs, p) for p in ("content", "prompt")}
    finally:
        handle.remove()


def test_content_pooling_ignores_every_position_outside_the_item(vlm, one_torch_thread):
    model, processor = vlm
    imgs = images()
    plain = prompt_positions_offset(model, processor, TEXTS, imgs, 0.0)
    shifted = prompt_positions_offset(model, processor, TEXTS, imgs, 50.0)
    np.testing.assert_array_equal(shifted["content"], plain["content"])  # not one bit changes
    assert np.abs(shifted["prompt"] - plain["prompt"]).min() > 1.0  # the old pooling follows the shared part
    # without the hook, the two poolings differ, and batch composition does not change content vectors
    assert not np.allclose(plain["content"], plain["prompt"])
    alone = embed_batch(model, processor, TEXTS[1:2], imgs[1:2], "content")
    np.testing.assert_allclose(alone[0], plain["content"][1], rtol=1e-4, atol=1e-5)


def test_shared_prefix_positions_are_identical_across_items(vlm):
    """Why: under causal attention the system prompt's hidden states are the same for every item."""
    model, processor = vlm
    prompts = [processor.apply_chat_template(item_messages(t, False, ""), tokenize=False,
                                             add_generation_prompt=False) for t in TEXTS[:2]]
    with torch.no_grad():
        hs = [model(**processor(text=[p], return_tensors="pt"), output_hidden_states=True).hidden_states[-1][0]
              for p in prompts]
    n_prefix = len(processor.tokenizer("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")["input_ids"])
    torch.testing.assert_close(hs[0][:n_prefix], hs[1][:n_prefix])


def test_embed_items_pooling_option(tiny, tmp_path):
    items = {str(i): {"title": t, "description": "", "image": ""} for i, t in enumerate(TEXTS)}
    (tmp_path / "item.json").write_text(json.dumps(items))
    (tmp_path / "images").mkdir()
    out = {}
    for pooling in ("content", "prompt"):
        meta = embed_items(tiny, tmp_path / "item.json", tmp_path / "images", tmp_path / f"{pooling}.npy",
                           tmp_path / f"{pooling}.json", pooling=pooling, device="cpu")
        assert meta["pooling"] == pooling
        out[pooling] = np.load(tmp_path / f"{pooling}.npy")
    assert out["content"].shape == out["prompt"].shape == (3, 64) and not np.allclose(out["content"], out["prompt"])
    with pytest.raises(ValueError, match="pooling"):
        embed_items(tiny, tmp_path / "item.json", tmp_path / "images", tmp_path / "x.npy", tmp_path / "x.json",
                    pooling="cls", device="cpu")
