"""Load a Qwen2.5-VL checkpoint (tiny demo model or the real 7B/3B), or a text-only causal LM (LLaMA / Qwen2
family, :mod:`mmgenrec.models.text_lm`), from a local directory; :func:`load_model` picks by the folder's config."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` means bf16 on GPU and fp32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_processor(path: str | Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(path))


def load_vlm(path: str | Path, *, device: str = "auto", dtype: str = "auto", attn_implementation: str | None = None):
    """Return ``(model, processor)`` loaded with ``from_pretrained(path)``; model in eval mode on ``device``."""
    from transformers import AutoModelForImageTextToText

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a local Hugging Face model directory")
    dev = pick_device(device)
    kwargs = {"dtype": pick_dtype(dtype, dev)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(str(path), **kwargs).to(dev)
    model.eval()
    processor = load_processor(path)
    log.info("loaded %s (%s, %s) from %s", type(model).__name__, dev, kwargs["dtype"], path)
    return model, processor


def load_lm(path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """Return ``(model, TextProcessor)`` for a text-only causal LM folder (``AutoModelForCausalLM``)."""
    from transformers import AutoModelForCausalLM

    from mmgenrec.models.text_lm import TextProcessor, is_text_lm

    path = Path(path)
    is_text_lm(path)  # a clear error when config.json is missing
    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=pick_dtype(dtype, dev)).to(dev)
    model.eval()
    log.info("loaded %s (%s) from %s", type(model).__name__, dev, path)
    return model, TextProcessor.from_pretrained(path)


def load_model(path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """``(model, processor)``: :func:`load_lm` for a text-only LM folder, else :func:`load_vlm`."""
    from mmgenrec.models.text_lm import is_text_lm

    if is_text_lm(path):
        return load_lm(path, device=device, dtype=dtype)
    return load_vlm(path, device=device, dtype=dtype)


def load_finetuned(base_dir: str | Path, adapter_dir: str | Path, *, device: str = "auto", dtype: str = "auto",
                   merge: bool = True):
    """Base model (VLM or text LM) + saved adapter: the tokenizer with the item tokens comes from ``adapter_dir``; the
    embeddings are resized exactly as at training time (to ``len(tokenizer)``) before the adapter is attached."""
    import json

    from peft import PeftModel

    from mmgenrec.models.text_lm import TextProcessor, is_text_lm

    adapter_dir = Path(adapter_dir)
    if is_text_lm(base_dir):
        model, _ = load_lm(base_dir, device=device, dtype=dtype)
        processor = TextProcessor.from_pretrained(adapter_dir)
    else:
        model, _ = load_vlm(base_dir, device=device, dtype=dtype)
        processor = load_processor(adapter_dir)
    meta = json.loads((adapter_dir / "token_meta.json").read_text())
    if len(processor.tokenizer) != meta["n_base_tokens"] + meta["n_new_tokens"]:
        raise ValueError(f"{adapter_dir}: tokenizer has {len(processor.tokenizer)} tokens, token_meta.json expects "
                         f"{meta['n_base_tokens'] + meta['n_new_tokens']}")
    model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).to(model.device)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, processor, meta


def download_snapshot(repo_id: str, out_dir: str | Path, *, revision: str | None = None) -> Path:
    """Fetch ``repo_id`` from the Hugging Face Hub into ``out_dir`` (``huggingface_hub.snapshot_download``, which
    resumes interrupted files); the folder appears under its final name only when complete."""
    from huggingface_hub import snapshot_download

    from mmgenrec.io import atomic_dir

    out_dir = Path(out_dir)
    cache = out_dir.parent / f".{out_dir.name}.hf-cache"  # kept across failed attempts: a rerun resumes
    with atomic_dir(out_dir) as tmp:
        snapshot_download(repo_id, revision=revision, local_dir=str(tmp), cache_dir=str(cache))
    log.info("downloaded %s@%s -> %s", repo_id, revision or "main", out_dir)
    return out_dir
