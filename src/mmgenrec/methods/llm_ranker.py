"""Kind ``llm_ranker``: MLLM4Rec (captions on) and LlamaRec (captions off).

A text LLM + LoRA reads the history's titles (+ BLIP-2 captions of the item images for MLLM4Rec) and the
retriever's K candidates lettered A, B, ... in an order shuffled by seed; a candidate's score is the logit of its
letter at the answer position (verbalizer). Trained with cross-entropy over the K letters on training prefixes
(the retriever's candidates of the training step, the target put in when absent); the epoch with the best valid
NDCG@10 (valid users whose target was retrieved, as LlamaRec validates) is kept.

Metrics (:func:`write_ranking`): the overall ones through ``Evaluation.write`` (a user whose target was not
retrieved is a miss), and as extra keys the retrieval-subset ones (users whose target is among the candidates, as
LlamaRec reports) plus the retriever's own order scored the same two ways.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmgenrec.evaluate.metrics import per_user_metrics
from mmgenrec.evaluate.seqrec import KS, NDCG_KS
from mmgenrec.methods.base import Evaluation, read_sequences, train_sequences
from mmgenrec.methods.llm_core import (add_lora, answer_token_ids, encode, fit, last_logits, load_lm,
                                       trainable_state)
from mmgenrec.methods.rank_data import (LETTERS, RESPONSE, ItemText, candidates_by_user, item_titles, list_prompt,
                                        read_candidates, read_captions, train_rows)

log = logging.getLogger(__name__)


def _metric_means(lists, targets, prefix):
    if not targets:
        return {}
    pu = per_user_metrics(lists, targets, ks=KS, ndcg_ks=NDCG_KS)
    return {f"{prefix}{m}": float(v.mean()) for m, v in pu.items()}


def write_ranking(evaluation: Evaluation, examples, cands: Mapping[str, list[int]], ranked: Sequence[list[int]],
                  metrics_path, topk_path, summary: dict) -> dict:
    """Overall metrics (misses count) via ``Evaluation.write``; subset and retriever metrics as extra keys."""
    targets = [ex.target for ex in examples]
    hit = [ex.target in cands[ex.user] for ex in examples]
    finished = [evaluation.finish(r, ex.history) for r, ex in zip(ranked, examples)]
    retr = [evaluation.finish(cands[ex.user], ex.history) for ex in examples]
    sub = [i for i, h in enumerate(hit) if h]
    extra = {"retrieval_recall": float(np.mean(hit)) if hit else 0.0, "n_subset": len(sub),
             **_metric_means([finished[i] for i in sub], [targets[i] for i in sub], "subset_"),
             **_metric_means(retr, targets, "retriever_"),
             **_metric_means([retr[i] for i in sub], [targets[i] for i in sub], "retriever_subset_")}
    return evaluation.write(metrics_path, topk_path, examples, {"0": ranked}, {**summary, **extra})


class ListRanker:
    """The LLM that scores a lettered candidate list (one forward pass per prompt)."""

    def __init__(self, model, tok, text: ItemText, cfg: Mapping):
        self.model, self.tok, self.text, self.cfg = model, tok, text, cfg
        self.k_max = int(cfg.get("candidates_k", 20))
        self.letter_ids = answer_token_ids(tok, RESPONSE, LETTERS[:self.k_max])

    def prompt(self, history, candidates, key):
        return list_prompt(history, candidates[:self.k_max], self.text, seed=int(self.cfg.get("seed", 0)), key=key,
                           max_history=int(self.cfg.get("max_history", 10)))

    def logits(self, prompts) -> torch.Tensor:
        enc = [encode(self.tok, p.text) for p in prompts]
        return last_logits(self.model, self.tok, enc, self.letter_ids)

    @torch.no_grad()
    def rank(self, items: Sequence[tuple[str, list[int], list[int]]], split: str, desc: str) -> list[list[int]]:
        """``(user, history, candidates)`` -> candidates ordered by their letter's logit (ties: shown order)."""
        self.model.eval()
        bs, out = int(self.cfg.get("eval_batch_size", 16)), []
        for s in tqdm(range(0, len(items), bs), desc=desc, unit="batch"):
            prompts = [self.prompt(h, c, f"{split}|{u}") for u, h, c in items[s:s + bs]]
            logits = self.logits(prompts).cpu().numpy()
            for p, row in zip(prompts, logits):
                k = len(p.order)
                order = np.argsort(-row[:k], kind="stable")
                out.append([p.order[i] for i in order])
        return out


def run_llm_ranker(inter_json, item_json, cand_valid, cand_test, cand_train, captions_json, model_dir,
                   metrics_path, topk_path, adapter_out=None, *, cfg: Mapping, evaluation: Mapping,
                   method: str = "llm_ranker", checkpoint_dir=None, stop_after: int | None = None) -> dict:
    """Train on the training part, select on valid, rank the evaluated split's candidates, write the metrics."""
    t0 = time.time()
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    ev = Evaluation.from_params(evaluation)
    sequences = read_sequences(inter_json)
    train = train_sequences(sequences)
    titles = item_titles(item_json, int(cfg.get("max_title_chars", 60)))
    captions = read_captions(captions_json, int(cfg.get("max_caption_chars", 80))) if cfg.get("captions") else {}
    text = ItemText(titles, captions)
    model, tok = load_lm(model_dir, device=(cfg.get("model") or {}).get("device", "auto"),
                         dtype=(cfg.get("model") or {}).get("dtype", "auto"))
    model = add_lora(model, cfg)
    ranker = ListRanker(model, tok, text, cfg)

    tr_rows = read_candidates(cand_train) if cfg.get("train_negatives", "retriever") == "retriever" else None
    if cfg.get("train_negatives", "retriever") == "retriever" and not tr_rows:
        raise ValueError(f"{cand_train}: no training rows; set the retriever's train_candidates or "
                         "train_negatives: random")
    samples = train_rows(train, tr_rows, n_candidates=ranker.k_max, n_items=max(titles) + 1, seed=seed,
                         source=str(cand_train))
    if cfg.get("max_train_samples"):
        samples = samples[:int(cfg["max_train_samples"])]
    valid_ex = [e for e in ev.examples(sequences, "valid")]
    valid_c = candidates_by_user(cand_valid, valid_ex)
    valid_ex = [e for e in valid_ex if e.target in valid_c[e.user]][: int(cfg.get("max_valid_users", 200))]

    def batch_loss(idx):
        model.train()
        prompts = [ranker.prompt(samples[i][1], samples[i][3], f"train|{samples[i][0]}|{len(samples[i][1])}")
                   for i in idx]
        logits = ranker.logits(prompts)
        k = len(prompts[0].order)
        if any(len(p.order) != k for p in prompts):
            logits = torch.stack([torch.where(torch.arange(logits.shape[1], device=logits.device) < len(p.order),
                                              row, torch.tensor(-1e9, device=logits.device))
                                  for p, row in zip(prompts, logits)])
        labels = torch.tensor([p.order.index(samples[i][2]) for p, i in zip(prompts, idx)], device=logits.device)
        return torch.nn.functional.cross_entropy(logits, labels)

    def select():
        if not valid_ex:
            return 0.0
        ranked = ranker.rank([(e.user, e.history, valid_c[e.user]) for e in valid_ex], "valid", "valid ranking")
        return float(per_user_metrics(ranked, [e.target for e in valid_ex], ks=(10,), ndcg_ks=(10,))["NDCG@10"].mean())

    params, state, load = trainable_state(model)
    key = {"cfg": dict(cfg), "n": len(samples), "method": method}
    train_info = fit(params, state, load, len(samples), batch_loss, select, epochs=int(cfg.get("epochs", 1)),
                     batch_size=int(cfg.get("batch_size", 8)), lr=float(cfg.get("lr", 1e-4)),
                     weight_decay=float(cfg.get("weight_decay", 0.0)), seed=seed, checkpoint_dir=checkpoint_dir,
                     key=key, desc=method, stop_after=stop_after)
    if "stopped" in train_info:
        return train_info
    if adapter_out is not None:
        model.save_pretrained(str(adapter_out))

    examples = ev.examples(sequences)
    cands = candidates_by_user(cand_test if ev.split == "test" else cand_valid, examples)
    ranked = ranker.rank([(e.user, e.history, cands[e.user]) for e in examples], ev.split, f"{method} ranking")
    summary = {"method": method, "invalid_beam_fraction": 0.0, "kind": "llm_ranker",
               "captions": bool(cfg.get("captions")), "n_captioned_items": len(captions),
               "retriever": cfg.get("retriever"), "candidates_k": ranker.k_max, "n_train_samples": len(samples),
               "train": train_info, "seconds": round(time.time() - t0, 2)}
    return write_ranking(ev, examples, cands, ranked, metrics_path, topk_path, summary)
