"""Model merging (``ours_merged``): one LoRA adapter that is the weighted average of the per-category adapters.

The merged low-rank update of every target module is exactly ``sum_c w_c * s_c * B_c @ A_c`` (``s_c`` the adapter's
``alpha / r`` scaling): peft's ``add_weighted_adapter(..., combination_type="cat")`` construction, done here on the
saved tensors (rank ``sum_c r_c``, scaling 1) so that categories with different item vocabularies can be merged
without loading a model per category.

The new item-token rows are NOT averaged: each category's semantic IDs are its own codebook (``<a_3>`` means
different things in two categories), so the merged adapter written for category ``c`` takes its token rows, its
tokenizer and its ``token_meta.json`` from ``c``'s own adapter; only the LoRA matrices (the shared language skill)
are averaged.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from mmgenrec.io import InputError, atomic_dir, write_json

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def _scaling(cfg: dict) -> float:
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise NotImplementedError("merging adapters with rank_pattern/alpha_pattern is not supported")
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / (r**0.5) if cfg.get("use_rslora") else alpha / r


def merge_weights(adapter_dirs: dict[str, Path], weighting: str = "uniform") -> dict[str, float]:
    """Weights summing to 1: ``uniform``, or ``examples`` (each category's number of training examples, from its
    ``train_log.json``)."""
    if weighting == "uniform":
        raw = {c: 1.0 for c in adapter_dirs}
    elif weighting == "examples":
        raw = {c: float(json.loads((Path(d) / "train_log.json").read_text())["examples"]) for c, d in adapter_dirs.items()}
    else:
        raise ValueError(f"unknown merge weighting {weighting!r}; expected uniform or examples")
    total = sum(raw.values())
    return {c: v / total for c, v in raw.items()}


def merge_lora(adapter_dirs: dict[str, str | Path], weights: dict[str, float], target: str, out_dir: str | Path) -> dict:
    """Write ``out_dir``: ``target``'s adapter folder (tokenizer, token rows, token_meta) with its LoRA matrices
    replaced by the weighted combination of every adapter in ``adapter_dirs``. Returns the merge record."""
    from safetensors.torch import load_file, save_file

    names = list(adapter_dirs)
    if target not in adapter_dirs:
        raise ValueError(f"target {target!r} is not among the merged adapters {names}")
    cfgs, tensors = {}, {}
    for c in names:
        d = Path(adapter_dirs[c])
        for f in ADAPTER_FILES:
            if not (d / f).is_file():
                raise InputError(f"{d}: missing {f}; not a saved peft adapter")
        cfgs[c] = json.loads((d / "adapter_config.json").read_text())
        tensors[c] = load_file(str(d / "adapter_model.safetensors"))
    lora_keys = sorted(k for k in tensors[target] if ".lora_A." in k)
    for c in names:
        if sorted(k for k in tensors[c] if ".lora_A." in k) != lora_keys:
            raise InputError(f"{adapter_dirs[c]}: LoRA modules differ from {adapter_dirs[target]}; cannot merge")
    merged = {k: v for k, v in tensors[target].items() if ".lora_A." not in k and ".lora_B." not in k}
    for key_a in lora_keys:
        key_b = key_a.replace(".lora_A.", ".lora_B.")
        merged[key_a] = torch.cat([tensors[c][key_a].float() for c in names], 0).to(tensors[target][key_a].dtype)
        merged[key_b] = torch.cat([weights[c] * _scaling(cfgs[c]) * tensors[c][key_b].float() for c in names], 1
                                  ).to(tensors[target][key_b].dtype)
    rank = sum(cfgs[c]["r"] for c in names)
    cfg = dict(cfgs[target], r=rank, lora_alpha=rank, use_rslora=False, rank_pattern={}, alpha_pattern={})
    record = {"method": "ours_merged", "target": target, "weights": weights, "merged_rank": rank,
              "sources": {c: str(adapter_dirs[c]) for c in names},
              "token_rows": f"from {target} (item IDs are per-category codebooks; not averaged)"}
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(adapter_dirs[target], tmp, dirs_exist_ok=True)
        save_file(merged, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
        meta = json.loads((tmp / "token_meta.json").read_text())
        meta.update(method="ours_merged", merge=record)
        write_json(tmp / "token_meta.json", meta)
        write_json(tmp / "merge.json", record)
    log.info("merged %d adapters (weights %s) into %s (rank %d)", len(names), weights, out_dir, rank)
    return record


def merge_for_category(adapter_dirs: dict[str, str | Path], target: str, out_dir: str | Path, *,
                       weighting: str = "uniform") -> dict:
    return merge_lora(adapter_dirs, merge_weights({c: Path(d) for c, d in adapter_dirs.items()}, weighting),
                      target, out_dir)
