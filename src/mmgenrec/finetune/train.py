"""LoRA on the language model + trainable new item-token rows, trained with the HF Trainer.

What trains, exactly: LoRA matrices on the language model's q/k/v/o/gate/up/down projections, and the rows of
the new item tokens in ``embed_tokens`` and ``lm_head`` (peft ``trainable_token_indices``). Nothing else: the
original embedding and LM-head rows stay bit-identical. Saved: the adapter (LoRA + new rows), the tokenizer and
processor with the item tokens, and ``token_meta.json``; never the full matrices.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch

from mmgenrec.finetune.data import PadCollator, SeqRecDataset, seqrec_pairs
from mmgenrec.io import atomic_dir, read_json, write_json
from mmgenrec.models.item_tokens import LORA_TARGET_REGEX, add_item_tokens, resize_and_init, tied
from mmgenrec.models.loading import load_vlm

log = logging.getLogger(__name__)


def lora_config(new_ids: list[int], is_tied: bool, r: int, alpha: int, dropout: float):
    from peft import LoraConfig

    tokens = list(new_ids) if is_tied else {"embed_tokens": list(new_ids), "lm_head": list(new_ids)}
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_REGEX,
        trainable_token_indices=tokens, task_type="CAUSAL_LM",
    )


def prepare_model(model_dir, index: dict[int, list[str]], all_tokens: list[str], *, r=16, alpha=64, dropout=0.05,
                  device="auto", dtype="auto", seed=0):
    """Load the base VLM, add the item tokens, wrap it with LoRA + trainable token rows."""
    from peft import get_peft_model

    model, processor = load_vlm(model_dir, device=device, dtype=dtype)
    n_base, new_ids = add_item_tokens(processor.tokenizer, all_tokens)
    resize_and_init(model, processor.tokenizer, n_base, seed=seed)
    is_tied = tied(model)  # before wrapping: peft's token wrappers hide the weight identity
    peft_model = get_peft_model(model, lora_config(new_ids, is_tied, r, alpha, dropout))
    meta = {"n_base_tokens": n_base, "new_token_ids": [new_ids[0], new_ids[-1] + 1], "n_new_tokens": len(new_ids),
            "tied_embeddings": is_tied, "levels": len(next(iter(index.values()))), "item_tokens": all_tokens}
    return peft_model, processor, meta


def trainable_summary(model) -> dict:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    return {"trainable_params": n_train, "all_params": n_all, "trainable_tensors": len(names),
            "trainable_non_lora": [n for n in names if "lora_" not in n]}


def finetune_seqrec(
    model_dir: str | Path,
    inter_json: str | Path,
    index_json: str | Path,
    out_dir: str | Path,
    *,
    all_tokens: list[str],
    max_history: int = 20,
    template_ids: tuple[int, ...] = (0,),
    lora_r: int = 16,
    lora_alpha: int = 64,
    lora_dropout: float = 0.05,
    epochs: float = 3.0,
    batch_size: int = 16,
    grad_accum: int = 1,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.05,
    padding_side: str = "right",
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    logging_steps: int = 10,
):
    """Train on the seqrec task and save adapter + processor + ``token_meta.json`` + ``train_log.json``."""
    from transformers import Trainer, TrainingArguments, set_seed

    t0 = time.time()
    set_seed(seed)
    index = {int(k): v for k, v in read_json(index_json).items()}
    sequences = read_json(inter_json)
    model, processor, meta = prepare_model(model_dir, index, all_tokens, r=lora_r, alpha=lora_alpha,
                                           dropout=lora_dropout, device=device, dtype=dtype, seed=seed)
    summary = trainable_summary(model)
    log.info("trainable: %s", {k: v for k, v in summary.items() if k != "trainable_non_lora"})
    dataset = SeqRecDataset(processor, seqrec_pairs(sequences, max_history), index, template_ids, seed)
    on_gpu = next(model.parameters()).device.type == "cuda"
    with tempfile.TemporaryDirectory(dir=Path(out_dir).parent) as scratch:
        args = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
            num_train_epochs=epochs, learning_rate=lr, weight_decay=weight_decay, warmup_steps=warmup_ratio,
            lr_scheduler_type="cosine", logging_steps=logging_steps, save_strategy="no", report_to=[],
            seed=seed, data_seed=seed, use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(),
            remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset,
                          data_collator=PadCollator(processor.tokenizer.pad_token_id, padding_side))
        result = trainer.train()
    curve = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    meta.update({"base_model": str(model_dir), "task": "seqrec", "max_history": max_history})
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(tmp / "token_meta.json", meta)
        write_json(tmp / "train_log.json", {
            "examples": len(dataset), "steps": trainer.state.global_step, "train_loss": result.training_loss,
            "first_loss": curve[0]["loss"] if curve else math.nan, "last_loss": curve[-1]["loss"] if curve else math.nan,
            "curve": curve, "seconds": round(time.time() - t0, 2), **summary,
        })
    log.info("saved adapter to %s (%d steps, loss %.3f)", out_dir, trainer.state.global_step, result.training_loss)
    return model, processor
