"""Embed every item of a prepared category with Qwen2.5-VL, one float32 row per item id.

Views: ``mm`` (image + text, the main vectors ``qwen_mm.npy``), ``text`` (the same prompt without the image) and
``image`` (the image alone, no item text; an item without a readable image falls back to its text, counted in
the meta file as ``image_view_text_fallback``). Same model, same pooling for all three.

Pooling (``embed.pooling``): ``content`` (default) averages the last hidden layer over the item's own tokens, its
image tokens and its text tokens (:func:`content_mask`); ``prompt`` over the whole chat prompt, including the
system prompt and chat markup that every item shares. Under causal attention those shared positions have the same
hidden states for every item and pull every vector towards one common offset; content pooling leaves them out
(the content tokens still attend to them).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mmgenrec.io import InputError, read_json, save_npy, write_json
from mmgenrec.data.images import load_item_image
from mmgenrec.models.loading import load_vlm
from mmgenrec.prompts import item_messages, item_text

log = logging.getLogger(__name__)

VIEWS = ("mm", "text", "image")
POOLINGS = ("content", "prompt")
EMBED_INSTRUCTION = ""  # the item alone, as in the study's extraction: no instruction text


def content_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer) -> torch.Tensor:
    """Per row, True on the item's own tokens: the user turn's content (after the last ``<|im_start|>user\\n``,
    before that turn's ``<|im_end|>``) without the ``<|vision_start|>`` / ``<|vision_end|>`` markers, i.e. its
    image tokens and its text tokens. Works for left and right padding."""
    start_id, end_id = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    markers = set(tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>"]))
    header = tokenizer("user\n", add_special_tokens=False)["input_ids"]
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    for i, (ids, att) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
        starts = [j for j, t in enumerate(ids) if t == start_id and att[j]]
        if not starts or ids[starts[-1] + 1 : starts[-1] + 1 + len(header)] != header:
            raise ValueError(f"row {i}: no user turn found in the embedding prompt")
        first = starts[-1] + 1 + len(header)
        ends = [j for j in range(first, len(ids)) if ids[j] == end_id and att[j]]
        if not ends:
            raise ValueError(f"row {i}: the user turn has no end")
        for j in range(first, ends[0]):
            mask[i, j] = ids[j] not in markers
        if not mask[i].any():
            raise ValueError(f"row {i}: the item has no content tokens")
    return mask


@torch.inference_mode()
def embed_batch(model, processor, texts: list[str], images: list[Image.Image | None],
                pooling: str = "content") -> np.ndarray:
    """Masked mean of the last hidden layer over each item's content tokens (``content``: image + text) or its
    whole prompt (``prompt``)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    prompts = []
    for text, image in zip(texts, images):
        msgs = item_messages(text, image is not None, EMBED_INSTRUCTION)
        prompts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False))
    imgs = [im for im in images if im is not None]
    batch = processor(text=prompts, images=imgs or None, padding=True, return_tensors="pt")
    if pooling == "content":
        keep = content_mask(batch["input_ids"], batch["attention_mask"], processor.tokenizer)
    else:
        keep = batch["attention_mask"].bool()
    batch = batch.to(model.device)
    out = model(**batch, output_hidden_states=True, use_cache=False)
    hidden = out.hidden_states[-1].float()
    mask = keep.to(hidden.device).unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return pooled.cpu().numpy().astype(np.float32)


def embed_items(
    model_dir: str | Path,
    item_json: str | Path,
    image_dir: str | Path,
    out_npy: str | Path,
    out_meta: str | Path,
    *,
    enriched_json: str | Path | None = None,
    use_images: bool = True,
    view: str = "mm",
    batch_size: int = 8,
    max_text_chars: int = 2000,
    pooling: str = "content",
    device: str = "auto",
    dtype: str = "auto",
) -> dict:
    """Write ``out_npy`` (``[n_items, hidden]`` float32, row i = item id i) and a small JSON of facts."""
    t0 = time.time()
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    use_images = use_images and view != "text"
    items = read_json(item_json)
    ids = sorted(items, key=int)
    if [int(i) for i in ids] != list(range(len(ids))):
        raise InputError(f"{item_json}: item ids must be 0..{len(ids) - 1} without gaps")
    enriched = read_json(enriched_json) if enriched_json else {}
    model, processor = load_vlm(model_dir, device=device, dtype=dtype)
    image_dir = Path(image_dir)
    rows, n_images, n_fallback = [], 0, 0
    for start in tqdm(range(0, len(ids), batch_size), desc="embed", unit="batch"):
        chunk = ids[start : start + batch_size]
        texts = [item_text(items[i], enriched.get(i), max_text_chars) for i in chunk]
        images = [load_item_image(image_dir, items[i].get("image"), i) if use_images else None for i in chunk]
        if view == "image":  # the image alone; text only for items without one
            n_fallback += sum(im is None for im in images)
            texts = [text if im is None else "" for text, im in zip(texts, images)]
        n_images += sum(im is not None for im in images)
        rows.append(embed_batch(model, processor, texts, images, pooling))
    emb = np.concatenate(rows) if rows else np.zeros((0, model.config.text_config.hidden_size), np.float32)
    if not np.isfinite(emb).all():
        bad = int(np.where(~np.isfinite(emb).all(1))[0][0])
        raise RuntimeError(f"embedding of item {bad} is not finite; check the model at {model_dir}")
    save_npy(out_npy, emb)
    meta = {
        "model": str(model_dir), "view": view, "n_items": len(ids), "dim": int(emb.shape[1]), "items_with_image": n_images,
        "items_text_only": len(ids) - n_images, "enriched_items": sum(i in enriched for i in ids),
        "pooling": pooling,
        "pooling_detail": "mean of the last hidden layer over " + ("the item's image and text tokens" if pooling ==
                                                                   "content" else "the whole chat prompt"), "seconds": round(time.time() - t0, 2),
    }
    if view == "image":
        meta["image_view_text_fallback"] = n_fallback
    write_json(out_meta, meta)
    log.info("embedded %d items (%d with image) -> %s", len(ids), n_images, out_npy)
    return meta
