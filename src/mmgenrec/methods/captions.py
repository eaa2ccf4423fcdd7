"""Item image captions for MLLM4Rec: every item image captioned by an image-to-text model (BLIP-2:
``Blip2ForConditionalGeneration``, or another ``AutoModelForImageTextToText``) loaded from a local folder.

Output ``captions.json``: ``{"captions": {item id: caption}, "n_items", "n_captioned", "n_without_image",
"model_class", "prompt"}``; items without an (readable) image get no caption and are counted.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmgenrec.data.images import load_item_image
from mmgenrec.io import InputError, read_json, write_json

log = logging.getLogger(__name__)
DEFAULT_PROMPT = "Question: What does this product image show? Answer:"


@torch.no_grad()
def caption_items(item_json, image_dir, model_dir, out_json, *, prompt: str = DEFAULT_PROMPT,
                  max_new_tokens: int = 20, batch_size: int = 8, device: str = "auto", dtype: str = "auto") -> dict:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmgenrec.evaluate.textgen import greedy_config
    from mmgenrec.models.loading import pick_device, pick_dtype

    t0 = time.time()
    items = read_json(item_json)
    if not isinstance(items, dict):
        raise InputError(f"{item_json}: expected a JSON object item id -> fields")
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; expected a local BLIP-2 (image-to-text) model folder")
    dev = pick_device(device)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=pick_dtype(dtype, dev)).to(dev).eval()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    tok = processor.tokenizer
    tok.padding_side = "left"
    gen = greedy_config(max_new_tokens, tok.eos_token_id, tok.pad_token_id)
    images = {k: load_item_image(image_dir, (v or {}).get("image"), k) for k, v in items.items()}
    todo = [k for k, im in images.items() if im is not None]
    captions = {}
    for s in tqdm(range(0, len(todo), batch_size), desc="captions", unit="batch"):
        chunk = todo[s:s + batch_size]
        batch = processor(images=[images[k] for k in chunk], text=[prompt] * len(chunk), padding=True,
                          return_tensors="pt").to(dev)
        out = model.generate(**dict(batch), generation_config=gen)
        new = out[:, batch["input_ids"].shape[1]:]
        for k, c in zip(chunk, tok.batch_decode(new, skip_special_tokens=True)):
            captions[k] = " ".join(c.split())
    result = {"captions": captions, "n_items": len(items), "n_captioned": len(captions),
              "n_without_image": len(items) - len(todo), "model_class": type(model).__name__, "prompt": prompt,
              "seconds": round(time.time() - t0, 2)}
    write_json(out_json, result)
    log.info("captioned %d of %d items (%d without image) with %s", len(captions), len(items),
             len(items) - len(todo), type(model).__name__)
    return result
