"""Kind ``vlm_candidates``: the RecLMMs setting (a PALR-style VLM recommender on H&M), leak-free.

Prompt: the customer's purchase history (article text: title with colour, department path; oldest first, window
``max_history``), the image of the MOST RECENT HISTORY article (never the target's), and a lettered candidate list
(``A.`` .. : the target + ``n_candidates - 1`` sampled articles outside the history, shuffled). The answer is the
chosen candidate's letter. LoRA on the language model, trained on the training part (every prefix).

Ranking: the candidates are ordered by the constrained decoder (:func:`generate_topk` over the one-level trie of the
letter tokens, beams = number of candidates), i.e. by the probability of each index token; its first entry is the
greedy answer. ``candidate_HR@1`` = how often that answer is the target. The ranked list is the ordered candidates,
then the remaining items by training popularity, so our HR/NDCG/MAP@12 are defined; with ``eval_candidates:
sampled`` the target is always among the candidates (a sampled-candidate metric, as in RecLMMs), with
``popularity`` the candidates are the retriever's top ``n_candidates`` (popular training items outside the history)
and the target may be missing (an honest full-catalogue metric). Model selection: valid ``candidate_HR@1``.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections import Counter

import torch

from mmgenrec.io import InputError, read_json
from mmgenrec.methods.base import Evaluation, Example, read_sequences, train_sequences
from mmgenrec.methods.vlm_history import (EOS, FocalTrainer, HistoryCollator, ValidSelection, fresh_checkpoints,
                                          image_path, prepare_lora_vlm, rank_prompts, render_prompt, token_trie)

log = logging.getLogger(__name__)

LETTERS = [chr(65 + i) for i in range(26)]
QUESTION = "Which candidate will the customer buy next? Answer with its letter."
DEFAULTS = dict(max_history=10, n_candidates=10, eval_candidates="sampled", max_words=12, lora_r=8,
                lora_alpha=32, lora_dropout=0.0, epochs=3, batch_size=8, lr=1e-3, eval_batch_size=16,
                valid_users=None, train_users=None, save_steps=0, seed=0)


def article_text(item: dict, max_words: int) -> str:
    text = f"{item.get('title') or 'Unknown'}; {item.get('categories') or 'Unknown'}"
    return " ".join(text.split()[:max_words])


def candidate_messages(history: list[int], candidates: list[int], items: dict, image_dir, max_words: int
                       ) -> tuple[list[dict], list[str]]:
    """The user turn and its one image (the most recent history article's, when it has one)."""
    lines = [f"{k + 1}. {article_text(items.get(str(i), {}), max_words)}" for k, i in enumerate(history)]
    content = [{"type": "text", "text": "The customer bought these articles, oldest first:\n" + "\n".join(lines)}]
    images = []
    last = image_path(image_dir, items.get(str(history[-1]))) if history else None
    if last:
        content += [{"type": "text", "text": "\nThe most recent purchase:"}, {"type": "image"}]
        images.append(last)
    cands = [f"{LETTERS[k]}. {article_text(items.get(str(i), {}), max_words)}" for k, i in enumerate(candidates)]
    content.append({"type": "text", "text": "\nCandidates:\n" + "\n".join(cands) + "\n" + QUESTION})
    return [{"role": "user", "content": content}], images


def sampled_candidates(rng: random.Random, target: int, history: list[int], n_items: int, n: int) -> list[int]:
    pool = [i for i in range(n_items) if i != target and i not in set(history)]
    cands = rng.sample(pool, min(len(pool), n - 1)) + [target]
    rng.shuffle(cands)
    return cands


def popular_candidates(order: list[int], history: list[int], n: int) -> list[int]:
    seen = set(history)
    return [i for i in order if i not in seen][:n]


def build_examples(sequences, items, image_dir, cfg, n_items) -> list[dict]:
    rng = random.Random(cfg["seed"])
    out = []
    for seq in list(train_sequences(sequences).values())[: cfg["train_users"]]:
        for t in range(1, len(seq)):
            history, target = seq[max(0, t - cfg["max_history"]):t], seq[t]
            if target in history:
                raise AssertionError(f"example shows its target {target} in the history")
            cands = sampled_candidates(rng, target, history, n_items, cfg["n_candidates"])
            msgs, images = candidate_messages(history, cands, items, image_dir, cfg["max_words"])
            out.append({"task": "select", "messages": msgs, "images": images, "history": history,
                        "candidates": cands, "answer": LETTERS[cands.index(target)], "target": target})
    return out


def eval_items(ev_examples: list[Example], cfg, n_items, popularity: list[int], seed_offset: int):
    """Per evaluated user: (history window, candidates)."""
    rng = random.Random(cfg["seed"] * 1000 + seed_offset)
    out = []
    for ex in ev_examples:
        h = ex.history[-cfg["max_history"]:]
        cands = (sampled_candidates(rng, ex.target, h, n_items, cfg["n_candidates"])
                 if cfg["eval_candidates"] == "sampled" else popular_candidates(popularity, h, cfg["n_candidates"]))
        out.append((h, cands))
    return out


def run_vlm_candidates(model_dir, inter_json, item_json, image_dir, metrics_path, topk_path, *, cfg: dict,
                       evaluation: dict, checkpoint_dir, method: str = "vlm_candidates", device: str = "auto",
                       dtype: str = "auto") -> dict:
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    t0 = time.time()
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if k != "kind"}}
    if not 2 <= cfg["n_candidates"] <= len(LETTERS):
        raise ValueError(f"n_candidates={cfg['n_candidates']}: expected 2..{len(LETTERS)} (lettered candidates)")
    if cfg["eval_candidates"] not in ("sampled", "popularity"):
        raise ValueError(f"eval_candidates={cfg['eval_candidates']!r}: expected 'sampled' or 'popularity'")
    ev = Evaluation.from_params(evaluation)
    set_seed(cfg["seed"])
    sequences = read_sequences(inter_json)
    items = read_json(item_json)
    n_items = 1 + max(i for s in sequences.values() for i in s)
    if any(str(i) not in items for i in range(n_items)):
        raise InputError(f"{item_json}: some items of {inter_json} have no record")
    counts = Counter(i for s in train_sequences(sequences).values() for i in s)
    popularity = sorted(range(n_items), key=lambda i: (-counts[i], i))
    ckpt = fresh_checkpoints(checkpoint_dir, {**cfg, "model": str(model_dir), "method": method},
                             [inter_json, item_json])
    model, processor = prepare_lora_vlm(model_dir, [], r=cfg["lora_r"], alpha=cfg["lora_alpha"],
                                        dropout=cfg["lora_dropout"], device=device, dtype=dtype, seed=cfg["seed"])
    trie = token_trie(processor.tokenizer, LETTERS[: cfg["n_candidates"]])
    trie.to(next(model.parameters()).device)
    tok = processor.tokenizer
    examples = build_examples(sequences, items, image_dir, cfg, n_items)
    rows = [{"text": render_prompt(processor, e["messages"], e["answer"]), "images": e["images"],
             "answer_ids": tok(e["answer"] + EOS, add_special_tokens=False)["input_ids"], "weight": 1.0,
             "task": e["task"]} for e in examples]

    def rank(m, ev_examples, seed_offset, desc):
        pairs = eval_items(ev_examples, cfg, n_items, popularity, seed_offset)
        prompts = []
        for h, cands in pairs:
            msgs, images = candidate_messages(h, cands, items, image_dir, cfg["max_words"])
            prompts.append((render_prompt(processor, msgs), images))
        n = cfg["n_candidates"]
        letters, invalid = rank_prompts(m, processor, prompts, trie, num_beams=n, top_k=n,
                                        batch_size=cfg["eval_batch_size"], desc=desc)
        ordered = [[c[k] for k in order if k < len(c)] for order, (_, c) in zip(letters, pairs)]
        return ordered, pairs, invalid

    valid = ev.examples(sequences, "valid")[: cfg["valid_users"]]

    def valid_hr1(m) -> float:
        ordered, _, _ = rank(m, valid, 1, "valid")
        return sum(bool(o) and o[0] == e.target for o, e in zip(ordered, valid)) / max(len(valid), 1)

    selection = ValidSelection(ckpt, valid_hr1, "candidate_HR@1")
    on_gpu = next(model.parameters()).device.type == "cuda"
    args = TrainingArguments(
        output_dir=str(ckpt / "trainer"), per_device_train_batch_size=cfg["batch_size"],
        num_train_epochs=cfg["epochs"], learning_rate=cfg["lr"], lr_scheduler_type="constant", logging_steps=10,
        save_strategy="steps" if cfg["save_steps"] else "epoch", save_steps=cfg["save_steps"] or 500, report_to=[],
        seed=cfg["seed"], data_seed=cfg["seed"], use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(),
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=False, max_steps=cfg.get("max_steps", -1))
    # gamma 0 and unit weights: plain token-mean cross-entropy on the answer letter
    trainer = FocalTrainer(model=model, args=args, train_dataset=rows, data_collator=HistoryCollator(processor),
                           callbacks=[selection], gamma=0.0)
    resume = get_last_checkpoint(str(ckpt / "trainer")) if (ckpt / "trainer").is_dir() else None
    result = trainer.train(resume_from_checkpoint=resume)
    selection.restore_best(model)
    model.eval()

    full = ev.examples(sequences)
    ordered, pairs, invalid = rank(model, full, 2, f"{method} {ev.split}")
    n_ranked = min(ev.n_ranked(cfg["max_history"]), n_items)
    ranked = []
    for o in ordered:
        rest = [i for i in popularity if i not in set(o)]
        ranked.append((o + rest)[: max(n_ranked, len(o))])
    hr1 = sum(bool(o) and o[0] == e.target for o, e in zip(ordered, full)) / max(len(full), 1)
    recall = sum(e.target in c for (_, c), e in zip(pairs, full)) / max(len(full), 1)
    summary = {"method": method, "kind": "vlm_candidates", "invalid_beam_fraction":
               invalid / max(cfg["n_candidates"] * len(full), 1), "candidate_HR@1": hr1,
               "candidates": cfg["eval_candidates"], "n_candidates": cfg["n_candidates"],
               "target_in_candidates": recall, "ranking": "candidates by index-token probability (constrained "
               "decoder, one level), then popularity", "train_examples": len(rows),
               "best_epoch": selection.record["epoch"], "valid_candidate_HR@1": selection.record["score"],
               "valid_curve": selection.record["curve"], "train_loss": result.training_loss, "resumed_from": resume,
               "seconds": round(time.time() - t0, 2)}
    out = ev.write(metrics_path, topk_path, full, {"0": ranked}, summary)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info("%s %s: candidate HR@1 %.4f, %s", method, ev.split, hr1,
             {k: round(v, 4) for k, v in out.items() if k.startswith(("HR", "NDCG", "MAP"))})
    return out
