"""Kind ``unimp``: UniMP (Wei et al., ICLR 2024) on Qwen2.5-VL + LoRA instead of OpenFlamingo.

The user's history is ONE interleaved sequence of items, each with its image (the last ``max_images`` items of the
window; older ones text only) and its fields as UniMP writes them (:func:`~mmgenrec.methods.vlm_history.
item_fields`), followed by its ATOMIC item token ``<item_N>`` (one new token per item; only those embedding /
LM-head rows train besides LoRA). Tasks (all answered with one item token, so one decoder ranks them all):

* ``rec``: "What is the next item recommended to the user?" -> the next item (loss weight ``rec_weight``, 2 as in
  UniMP's ``weights: 2.0``);
* ``search``: the same history + "Query: <the target's category>" -> the target (a ``tasks.search`` fraction of
  the rec pairs, UniMP's 0.25 by default);
* ``selection``: the same history + a shuffled candidate list (target + ``n_select_candidates - 1`` random items
  outside the history) -> the target (fraction ``tasks.selection``);
* explanation generation is OFF: the prepared data keeps no review text.

The loss is the focal loss (``focal_gamma``) times each example's task weight. Training examples come from the
training part only (every prefix, window ``max_history``); the epoch with the best valid HR@10 (rec prompt,
constrained decoding) is kept; test users are ranked by beam search over the one-level trie of item tokens.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

import torch

from mmgenrec.io import InputError, read_json
from mmgenrec.methods.base import Evaluation, Example, read_sequences, train_sequences
from mmgenrec.methods.vlm_history import (EOS, FocalTrainer, HistoryCollator, ValidSelection, fresh_checkpoints,
                                          image_path, item_fields, prepare_lora_vlm, rank_prompts, render_prompt,
                                          token_trie)

log = logging.getLogger(__name__)

REC_Q = "What is the next item recommended to the user?"
SEARCH_Q = "Query: {query}. What is the item the user is searching for?"
SELECT_Q = "Candidates: {candidates}. Which candidate will the user choose next?"

DEFAULTS = dict(max_history=5, max_images=3, tasks={"search": 0.25, "selection": 0.25}, rec_weight=2.0,
                focal_gamma=2.0, n_select_candidates=5, lora_r=8, lora_alpha=32, lora_dropout=0.0, epochs=3,
                batch_size=8, lr=1e-3, num_beams=20, eval_batch_size=16, valid_users=None, train_users=None, save_steps=0, seed=0)


def item_token(item: int) -> str:
    return f"<item_{item}>"


def history_messages(history: list[int], items: dict, image_dir, max_images: int, question: str
                     ) -> tuple[list[dict], list[str]]:
    """The interleaved user turn: per history item (oldest first) its image (last ``max_images`` only), its fields
    and its item token; then ``question``. Returns ``(messages, image paths in prompt order)``."""
    content, images = [], []
    first_with_image = len(history) - max_images
    for k, i in enumerate(history):
        item = items.get(str(i), {})
        path = image_path(image_dir, item) if k >= first_with_image else None
        if path:
            content.append({"type": "image"})
            images.append(path)
        content.append({"type": "text", "text": f"{item_fields(item)} {item_token(i)}\n"})
    content.append({"type": "text", "text": question})
    return [{"role": "user", "content": content}], images


def build_examples(sequences: dict[str, list[int]], items: dict, image_dir, cfg: dict, n_items: int) -> list[dict]:
    """Every training example (rec for every prefix of every training part; search / selection on seeded
    fractions of those pairs). Asserts that no example's history holds its target."""
    rng = random.Random(cfg["seed"])
    pairs = []
    for user, seq in list(train_sequences(sequences).items())[: cfg["train_users"]]:
        for t in range(1, len(seq)):
            pairs.append((user, seq[max(0, t - cfg["max_history"]):t], seq[t]))
    out = []

    def add(task, history, target, question, weight):
        if target in history:
            raise AssertionError(f"{task} example shows its target {target} in the history")
        msgs, images = history_messages(history, items, image_dir, cfg["max_images"], question)
        out.append({"task": task, "messages": msgs, "images": images, "answer": item_token(target),
                    "weight": weight, "target": target, "history": history})

    for _, h, t in pairs:
        add("rec", h, t, REC_Q, float(cfg["rec_weight"]))
    tasks = cfg.get("tasks") or {}
    for task in ("search", "selection"):
        frac = float(tasks.get(task, 0.0))
        chosen = rng.sample(pairs, round(frac * len(pairs))) if frac < 1 else pairs * round(frac)
        for _, h, t in chosen:
            if task == "search":
                query = " ".join(str(items.get(str(t), {}).get("categories") or "Unknown").split()[:20])
                add(task, h, t, SEARCH_Q.format(query=query), 1.0)
            else:
                pool = [i for i in range(n_items) if i != t and i not in h]
                cands = rng.sample(pool, min(len(pool), cfg["n_select_candidates"] - 1)) + [t]
                rng.shuffle(cands)
                add(task, h, t, SELECT_Q.format(candidates=", ".join(item_token(c) for c in cands)), 1.0)
    return out


def _rows(processor, examples: list[dict]) -> list[dict]:
    tok = processor.tokenizer
    return [{"text": render_prompt(processor, e["messages"], e["answer"]), "images": e["images"],
             "answer_ids": tok(e["answer"] + EOS, add_special_tokens=False)["input_ids"], "weight": e["weight"],
             "task": e["task"]} for e in examples]


def eval_prompts(processor, examples: list[Example], items, image_dir, cfg) -> list[tuple[str, list[str]]]:
    out = []
    for ex in examples:
        msgs, images = history_messages(ex.history[-cfg["max_history"]:], items, image_dir, cfg["max_images"], REC_Q)
        out.append((render_prompt(processor, msgs), images))
    return out


def hit_rate(ranked: list[list[int]], targets: list[int], k: int = 10) -> float:
    return sum(t in r[:k] for r, t in zip(ranked, targets)) / max(len(targets), 1)


def run_unimp(model_dir, inter_json, item_json, image_dir, metrics_path, topk_path, *, cfg: dict,
              evaluation: dict, checkpoint_dir, method: str = "unimp", device: str = "auto",
              dtype: str = "auto") -> dict:
    """Train UniMP on the training part, select the epoch on valid HR@10, rank the evaluated split, write."""
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    t0 = time.time()
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if k != "kind"}}
    ev = Evaluation.from_params(evaluation)
    set_seed(cfg["seed"])
    sequences = read_sequences(inter_json)
    items = read_json(item_json)
    n_items = 1 + max(i for s in sequences.values() for i in s)
    missing = [i for i in range(n_items) if str(i) not in items]
    if missing:
        raise InputError(f"{item_json}: items {missing[:5]} of {inter_json} have no record")
    ckpt = fresh_checkpoints(checkpoint_dir, {**cfg, "model": str(model_dir), "method": method},
                             [inter_json, item_json])
    tokens = [item_token(i) for i in range(n_items)]
    model, processor = prepare_lora_vlm(model_dir, tokens, r=cfg["lora_r"], alpha=cfg["lora_alpha"],
                                        dropout=cfg["lora_dropout"], device=device, dtype=dtype, seed=cfg["seed"])
    trie = token_trie(processor.tokenizer, tokens)
    trie.to(next(model.parameters()).device)
    examples = build_examples(sequences, items, image_dir, cfg, n_items)
    counts = {t: sum(e["task"] == t for e in examples) for t in ("rec", "search", "selection")}
    log.info("%s: %d training examples %s", method, len(examples), counts)

    valid = ev.examples(sequences, "valid")[: cfg["valid_users"]]
    valid_prompts = eval_prompts(processor, valid, items, image_dir, cfg)
    beams_valid = min(max(cfg["num_beams"], 10), n_items)

    def valid_hr(m) -> float:
        ranked, _ = rank_prompts(m, processor, valid_prompts, trie, num_beams=beams_valid, top_k=min(10, n_items),
                                 batch_size=cfg["eval_batch_size"], desc="valid")
        return hit_rate(ranked, [e.target for e in valid])

    selection = ValidSelection(ckpt, valid_hr, "HR@10")
    on_gpu = next(model.parameters()).device.type == "cuda"
    args = TrainingArguments(
        output_dir=str(ckpt / "trainer"), per_device_train_batch_size=cfg["batch_size"],
        num_train_epochs=cfg["epochs"], learning_rate=cfg["lr"], lr_scheduler_type="constant",
        logging_steps=10, save_strategy="steps" if cfg["save_steps"] else "epoch",
        save_steps=cfg["save_steps"] or 500, report_to=[], seed=cfg["seed"], data_seed=cfg["seed"],
        use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(), remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False, max_steps=cfg.get("max_steps", -1))
    trainer = FocalTrainer(model=model, args=args, train_dataset=_rows(processor, examples),
                           data_collator=HistoryCollator(processor), callbacks=[selection], gamma=cfg["focal_gamma"])
    resume = get_last_checkpoint(str(ckpt / "trainer")) if (ckpt / "trainer").is_dir() else None
    result = trainer.train(resume_from_checkpoint=resume)
    selection.restore_best(model)
    model.eval()

    full = ev.examples(sequences)
    n_ranked = min(ev.n_ranked(cfg["max_history"]), n_items)
    ranked, invalid = rank_prompts(model, processor, eval_prompts(processor, full, items, image_dir, cfg), trie,
                                   num_beams=min(max(cfg["num_beams"], n_ranked), n_items), top_k=n_ranked,
                                   batch_size=cfg["eval_batch_size"], desc=f"{method} {ev.split}")
    n_beams = min(max(cfg["num_beams"], n_ranked), n_items) * len(full)
    summary = {"method": method, "kind": "unimp", "invalid_beam_fraction": invalid / max(n_beams, 1),
               "train_examples": counts, "explanation_task": "off (no review text in the prepared data)",
               "best_epoch": selection.record["epoch"], "valid_HR@10": selection.record["score"],
               "valid_curve": selection.record["curve"], "train_loss": result.training_loss,
               "resumed_from": resume, "seconds": round(time.time() - t0, 2)}
    out = ev.write(metrics_path, topk_path, full, {"0": ranked}, summary)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info("%s %s: %s", method, ev.split, {k: round(v, 4) for k, v in out.items() if k.startswith(("HR", "NDCG"))})
    return out
