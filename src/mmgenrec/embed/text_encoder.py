"""The ``lm_text`` view: one float32 vector per item from a text encoder (a LLaMA-family LLM in the real study),
pooled per field as LC-Rec does (``data_process/amazon_text_emb.py``): each configured field (title,
description) is encoded on its own, its last hidden states mean-pooled over its tokens (attention mask), and the
item's vector is the mean over the fields it has. An item with none of the fields is an error.

The encoder is loaded with ``AutoModel.from_pretrained(local_dir)`` (a causal-LM folder gives its decoder body)
and ``AutoTokenizer``; fields of many items are encoded in padded batches. Position ids follow the attention mask,
so left or right padding gives the same vectors.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmgenrec.io import InputError, read_json, save_npy, write_json
from mmgenrec.models.loading import pick_device, pick_dtype
from mmgenrec.prompts import _as_text

log = logging.getLogger(__name__)

MAX_TOKENS = 2048  # LC-Rec's max_sent_len


def load_text_encoder(path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """``(model, tokenizer)``: the base model of a local HF folder (``AutoModel``), eval mode, on ``device``."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a local Hugging Face model directory")
    dev = pick_device(device)
    model = AutoModel.from_pretrained(str(path), dtype=pick_dtype(dtype, dev)).to(dev).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:  # LLaMA ships none (LC-Rec pads with id 0); the attention mask hides it
        tok.pad_token = tok.unk_token or tok.eos_token
    return model, tok


@torch.inference_mode()
def encode(model, tokenizer, texts: list[str], padding_side: str = "right") -> np.ndarray:
    """Mean of the last hidden states over each text's tokens, ``[len(texts), hidden]`` float32."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, padding_side=padding_side,
                      return_tensors="pt").to(model.device)
    mask = batch["attention_mask"]
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=position_ids, use_cache=False)
    hidden = out.last_hidden_state.float()
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).cpu().numpy().astype(np.float32)


def item_fields(items: dict, item_json, fields: list[str], max_text_chars: int) -> list[list[str]]:
    """Per item id 0..n-1: the non-empty texts of ``fields``, in field order."""
    ids = sorted(items, key=int)
    if [int(i) for i in ids] != list(range(len(ids))):
        raise InputError(f"{item_json}: item ids must be 0..{len(ids) - 1} without gaps")
    out = []
    for i in ids:
        texts = [t for t in (_as_text(items[i].get(f))[:max_text_chars].strip() for f in fields) if t]
        if not texts:
            raise InputError(f"{item_json}: item {i} has none of the fields {list(fields)} (lm_text needs one)")
        out.append(texts)
    return out


def embed_lm_text(
    model_dir: str | Path,
    item_json: str | Path,
    out_npy: str | Path,
    out_meta: str | Path,
    *,
    fields: list[str] = ("title", "description"),
    batch_size: int = 8,
    max_text_chars: int = 2000,
    padding_side: str = "right",
    device: str = "auto",
    dtype: str = "auto",
) -> dict:
    """Write ``out_npy`` (``[n_items, hidden]`` float32, row i = item id i) and a JSON of facts."""
    t0 = time.time()
    if not fields:
        raise ValueError("text_encoder.fields must name at least one item field")
    per_item = item_fields(read_json(item_json), item_json, list(fields), max_text_chars)
    model, tok = load_text_encoder(model_dir, device=device, dtype=dtype)
    flat = [(i, t) for i, texts in enumerate(per_item) for t in texts]
    order = sorted(range(len(flat)), key=lambda k: len(flat[k][1]))  # similar lengths together: less padding
    vectors: list[np.ndarray | None] = [None] * len(flat)
    for start in tqdm(range(0, len(order), batch_size), desc="embed lm_text", unit="batch"):
        chunk = order[start:start + batch_size]
        for k, v in zip(chunk, encode(model, tok, [flat[k][1] for k in chunk], padding_side)):
            vectors[k] = v
    dim = int(vectors[0].shape[0]) if vectors else int(model.config.hidden_size)
    sums, counts = np.zeros((len(per_item), dim), np.float64), np.zeros(len(per_item))
    for (i, _), v in zip(flat, vectors):
        sums[i] += v
        counts[i] += 1
    emb = (sums / counts[:, None]).astype(np.float32)
    if not np.isfinite(emb).all():
        bad = int(np.where(~np.isfinite(emb).all(1))[0][0])
        raise RuntimeError(f"lm_text vector of item {bad} is not finite; check the model at {model_dir}")
    save_npy(out_npy, emb)
    meta = {"model": str(model_dir), "view": "lm_text", "n_items": len(per_item), "dim": dim, "fields": list(fields),
            "items_per_field_count": {str(n): int((counts == n).sum()) for n in sorted(set(counts.astype(int)))},
            "pooling": "per field: mean of the last hidden states over its tokens; item: mean over its fields",
            "seconds": round(time.time() - t0, 2)}
    write_json(out_meta, meta)
    log.info("lm_text: %d items x %d -> %s", len(per_item), dim, out_npy)
    return meta
