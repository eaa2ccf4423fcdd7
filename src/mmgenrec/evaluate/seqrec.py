"""Sequential recommendation evaluation: trie-constrained beam search over real item IDs, every test user once."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from mmgenrec.evaluate.metrics import per_user_metrics, rank_metrics
from mmgenrec.evaluate.trie import ItemTrie, generate_topk
from mmgenrec.io import InputError, atomic_path, read_json, write_json
from mmgenrec.models.loading import load_finetuned
from mmgenrec.prompts import render, seqrec_messages, sid_string

log = logging.getLogger(__name__)


def split_examples(sequences: dict[str, list[int]], split: str, max_history: int) -> list[tuple[str, list[int], int]]:
    """(user, history, target) per user: ``test`` predicts the last item, ``valid`` the second last."""
    cut = {"test": 1, "valid": 2}[split]
    out = []
    for user, seq in sequences.items():
        if len(seq) < 3:
            raise InputError(f"user {user}: sequence of {len(seq)} items; leave-one-out needs at least 3")
        history, target = seq[: len(seq) - cut], seq[len(seq) - cut]
        out.append((user, history[-max_history:], target))
    return out


def write_results(metrics_path, topk_path, users, targets, topk, summary: dict) -> dict:
    """Shared by every method: metrics JSON (means) + per-user JSONL (top-k, target, per-user metrics)."""
    ks = summary.pop("ks", (1, 5, 10))
    metrics = rank_metrics(topk, targets, ks=ks, ndcg_ks=(5, 10))
    per_user = per_user_metrics(topk, targets, ks=ks, ndcg_ks=(5, 10))
    with atomic_path(topk_path) as tmp, open(tmp, "w") as f:
        for i, (u, t, items) in enumerate(zip(users, targets, topk)):
            row = {"user": u, "target": t, "topk": items, **{k: float(v[i]) for k, v in per_user.items()}}
            f.write(json.dumps(row) + "\n")
    result = {**metrics, "n_users": len(users), **summary}
    write_json(metrics_path, result)
    return result


def evaluate_seqrec(
    base_dir: str | Path,
    adapter_dir: str | Path,
    inter_json: str | Path,
    index_json: str | Path,
    metrics_path: str | Path,
    topk_path: str | Path,
    *,
    split: str = "test",
    num_beams: int = 20,
    top_k: int = 10,
    batch_size: int = 16,
    max_history: int = 20,
    template_id: int = 0,
    device: str = "auto",
    dtype: str = "auto",
) -> dict:
    t0 = time.time()
    if num_beams < top_k:
        raise ValueError(f"num_beams ({num_beams}) must be >= top_k ({top_k}) to return {top_k} distinct items")
    sequences = read_json(inter_json)
    index = {int(k): v for k, v in read_json(index_json).items()}
    model, processor, meta = load_finetuned(base_dir, adapter_dir, device=device, dtype=dtype)
    tok = processor.tokenizer
    tok.padding_side = "left"
    items = sorted(index)
    if items != list(range(len(items))):
        raise InputError(f"{index_json}: item ids must be 0..{len(items) - 1}")
    trie = ItemTrie([tok.convert_tokens_to_ids(index[i]) for i in items], eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                    pad_token_id=tok.pad_token_id).to(model.device)
    examples = split_examples(sequences, split, max_history)
    users, targets, topk, n_invalid, n_beams = [], [], [], 0, 0
    for start in tqdm(range(0, len(examples), batch_size), desc=f"seqrec {split}", unit="batch"):
        chunk = examples[start : start + batch_size]
        prompts = [render(processor, seqrec_messages([sid_string(index[i]) for i in h], template_id))[0]
                   for _, h, _ in chunk]
        batch = processor(text=prompts, padding=True, return_tensors="pt").to(model.device)
        ranked, _, invalid = generate_topk(
            model, dict(batch), trie, num_beams=num_beams, top_k=top_k, prompt_len=batch["input_ids"].shape[1],
            eos_token_id=trie.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        n_invalid += invalid
        n_beams += num_beams * len(chunk)
        users += [u for u, _, _ in chunk]
        targets += [t for _, _, t in chunk]
        topk += ranked
    summary = {"method": "ours", "split": split, "num_beams": num_beams, "template_id": template_id,
               "invalid_beam_fraction": n_invalid / max(n_beams, 1), "n_invalid_beams": n_invalid,
               "seconds": round(time.time() - t0, 2)}
    result = write_results(metrics_path, topk_path, users, targets, topk, summary)
    log.info("%s: %s", split, {k: v for k, v in result.items() if k.startswith(("HR", "NDCG"))})
    return result
