"""Kind ``collm``: TALLRec (variant ``tallrec``), CoLLM (``collm``) and CoLLM-FaissRet (``faissret``).

* tallrec: yes/no prompt (history titles + target title) on a text LLM with LoRA, trained with cross-entropy over
  the Yes / No tokens on training prefixes (the next item = Yes, sampled unseen items = No); the adapter is kept.
* collm: stage 2: an MF model (BPR on the training part) gives user and item vectors; a two-layer MLP maps them into
  the LLM's embedding space as the ``<UserID>`` / ``<ItemID>`` tokens of the prompt (``inputs_embeds``); the
  TALLRec LoRA (``lora_from``) and the MF are frozen, only the mapper trains.
* faissret: CoLLM (``scorer_from``) scores the top-K of a Faiss inner-product index over the MF item vectors for
  each user's MF vector instead of a retriever's candidate file.

Every variant selects its epoch by valid AUC (the papers' selection metric) and reports the pointwise AUC / UAUC
(held-out target vs sampled unseen items; warm and cold items apart) and the ranking of the candidate list by
P(yes) through the shared metric code (overall + retrieval-subset, :func:`write_ranking`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmgenrec.io import atomic_dir, write_json
from mmgenrec.methods.base import Evaluation, read_sequences, train_sequences
from mmgenrec.methods.collab import auc, faiss_candidates, pointwise_metrics, pointwise_sample, train_mf
from mmgenrec.methods.llm_core import (add_lora, answer_token_ids, encode, fit, last_logits, load_lm,
                                       trainable_state)
from mmgenrec.methods.llm_ranker import write_ranking
from mmgenrec.methods.rank_data import (ITEM_SLOT, RESPONSE, USER_SLOT, ItemText, candidates_by_user, item_titles,
                                        yesno_prompt)

log = logging.getLogger(__name__)
VARIANTS = ("tallrec", "collm", "faissret")


class YesNoScorer:
    """P(yes) of (history, item) prompts; with a mapper, the user's and item's MF vectors fill the slots."""

    def __init__(self, model, tok, text: ItemText, cfg: Mapping, mapper=None, mf=None):
        self.model, self.tok, self.text, self.cfg, self.mapper, self.mf = model, tok, text, cfg, mapper, mf
        self.answer_ids = answer_token_ids(tok, RESPONSE, ["Yes", "No"])
        self.collab = mapper is not None

    def logits(self, rows) -> torch.Tensor:
        """rows: (user, history, item[, label]) -> logits over (Yes, No)."""
        mh = int(self.cfg.get("max_history", 10))
        enc = [encode(self.tok, yesno_prompt(r[1], r[2], self.text, max_history=mh, collab=self.collab),
                      (USER_SLOT, ITEM_SLOT) if self.collab else ()) for r in rows]
        slot = None
        if self.collab:
            users, U, V = self.mf
            dev = next(self.model.parameters()).device
            uvec = self.mapper(torch.from_numpy(U[[users[r[0]] for r in rows]]).to(dev))
            ivec = self.mapper(torch.from_numpy(V[[int(r[2]) for r in rows]]).to(dev))

            def slot(row, s):
                return uvec[row] if s == 0 else ivec[row]
        return last_logits(self.model, self.tok, enc, self.answer_ids, slot)

    @torch.no_grad()
    def p_yes(self, rows, desc: str) -> np.ndarray:
        self.model.eval()
        bs, out = int(self.cfg.get("eval_batch_size", 32)), []
        for s in tqdm(range(0, len(rows), bs), desc=desc, unit="batch"):
            out.append(torch.softmax(self.logits(rows[s:s + bs]), -1)[:, 0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def train_samples(train, n_items: int, cfg: Mapping, seed: int):
    """TALLRec-style samples on the training part: the last ``train_prefixes`` prefixes of each user, the next
    item labelled Yes and ``train_negatives`` unseen items labelled No."""
    import random

    out, n_pref, n_neg = [], int(cfg.get("train_prefixes", 1)), int(cfg.get("train_negatives", 1))
    for user, seq in train.items():
        rng = random.Random(f"{seed}|train|{user}")
        seen = set(seq)
        pool = [i for i in range(n_items) if i not in seen]
        for t in range(max(1, len(seq) - n_pref), len(seq)):
            out.append((user, list(seq[:t]), int(seq[t]), 1))
            out += [(user, list(seq[:t]), int(i), 0) for i in rng.sample(pool, min(n_neg, len(pool)))]
    return out


def make_mapper(rec_dim: int, llm_dim: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(rec_dim, 2 * llm_dim), torch.nn.ReLU(),
                               torch.nn.Linear(2 * llm_dim, llm_dim))


def run_collm(inter_json, item_json, cand_valid, cand_test, model_dir, metrics_path, topk_path, model_out=None,
              lora_in=None, collm_in=None, *, cfg: Mapping, evaluation: Mapping, method: str = "collm",
              checkpoint_dir=None, stop_after: int | None = None) -> dict:
    t0 = time.time()
    variant, seed = cfg.get("variant", "tallrec"), int(cfg.get("seed", 0))
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    torch.manual_seed(seed)
    ev = Evaluation.from_params(evaluation)
    sequences = read_sequences(inter_json)
    train = train_sequences(sequences)
    titles = item_titles(item_json, int(cfg.get("max_title_chars", 60)))
    n_items = max(max(titles), max(max(s) for s in sequences.values())) + 1
    warm = {i for s in train.values() for i in s}
    text = ItemText(titles)
    model, tok = load_lm(model_dir, device=(cfg.get("model") or {}).get("device", "auto"),
                         dtype=(cfg.get("model") or {}).get("dtype", "auto"))
    dev = next(model.parameters()).device
    mapper = mf = None
    if variant == "tallrec":
        model = add_lora(model, cfg)
    else:
        model = add_lora(model, cfg, adapter_dir=lora_in, trainable=False)
        for p in model.parameters():
            p.requires_grad_(False)
        hidden = model.get_input_embeddings().weight.shape[1]
        if variant == "collm":
            mf = train_mf(train, n_items, dim=int(cfg.get("mf_dim", 16)), epochs=int(cfg.get("mf_epochs", 50)),
                          lr=float(cfg.get("mf_lr", 0.01)), seed=seed)
            mapper = make_mapper(mf[1].shape[1], hidden, seed).to(dev)
        else:
            saved = torch.load(Path(collm_in) / "collab.pt", map_location="cpu", weights_only=False)
            mf = (saved["users"], saved["U"], saved["V"])
            mapper = make_mapper(mf[1].shape[1], hidden, seed).to(dev)
            mapper.load_state_dict(saved["mapper"])
    scorer = YesNoScorer(model, tok, text, cfg, mapper, mf)

    valid_ex = ev.examples(sequences, "valid")[: int(cfg.get("max_valid_users", 200))]
    valid_pw = pointwise_sample(valid_ex, sequences, n_items, int(cfg.get("eval_negatives", 9)), seed, "valid")
    train_info = {}
    if variant != "faissret":
        samples = train_samples(train, n_items, cfg, seed)
        module = mapper if variant == "collm" else model

        def batch_loss(idx):
            module.train()
            rows = [samples[i] for i in idx]
            labels = torch.tensor([0 if r[3] else 1 for r in rows], device=dev)  # class 0 = Yes
            return torch.nn.functional.cross_entropy(scorer.logits(rows), labels)

        def select():
            return auc([r[3] for r in valid_pw], scorer.p_yes(valid_pw, "valid AUC")) or 0.0

        params, state, load = trainable_state(module)
        train_info = fit(params, state, load, len(samples), batch_loss, select, epochs=int(cfg.get("epochs", 1)),
                         batch_size=int(cfg.get("batch_size", 8)), lr=float(cfg.get("lr", 1e-4)),
                         weight_decay=float(cfg.get("weight_decay", 0.0)), seed=seed, checkpoint_dir=checkpoint_dir,
                         key={"cfg": dict(cfg), "n": len(samples), "method": method}, desc=method,
                         stop_after=stop_after)
        if "stopped" in train_info:
            return train_info
        train_info["n_train_samples"] = len(samples)
        if model_out is not None:
            with atomic_dir(model_out) as tmp:
                if variant == "tallrec":
                    model.save_pretrained(str(tmp))
                else:
                    torch.save({"users": mf[0], "U": mf[1], "V": mf[2], "mapper": mapper.state_dict()},
                               Path(tmp) / "collab.pt")
                write_json(Path(tmp) / "train_log.json", train_info)

    examples = ev.examples(sequences)
    test_pw = pointwise_sample(examples, sequences, n_items, int(cfg.get("eval_negatives", 9)), seed, ev.split)
    pointwise = pointwise_metrics(test_pw, scorer.p_yes(test_pw, f"{method} pointwise"), warm)
    extra = {}
    if variant == "faissret":
        users, U, V = mf
        k = int(cfg.get("candidates_k", 20))
        lists, ms = faiss_candidates(U[[users[e.user] for e in examples]], V, [e.history for e in examples], k)
        cands = {e.user: c for e, c in zip(examples, lists)}
        extra = {"retrieval_ms_per_user": ms, f"retrieval_recall@{k}": float(np.mean(
            [e.target in cands[e.user] for e in examples]))}
    else:
        cands = candidates_by_user(cand_test if ev.split == "test" else cand_valid, examples)
    rows = [(e.user, e.history, c) for e in examples for c in cands[e.user]]
    scores = scorer.p_yes(rows, f"{method} ranking")
    ranked, pos = [], 0
    for e in examples:
        c = cands[e.user]
        s = scores[pos:pos + len(c)]
        pos += len(c)
        ranked.append([c[i] for i in np.argsort(-s, kind="stable")])
    summary = {"method": method, "invalid_beam_fraction": 0.0, "kind": "collm", "variant": variant,
               "retriever": "faiss_mf" if variant == "faissret" else cfg.get("retriever"),
               **{key: v for key, v in pointwise.items() if v is not None}, **extra,
               "train": train_info, "seconds": round(time.time() - t0, 2)}
    return write_ranking(ev, examples, cands, ranked, metrics_path, topk_path, summary)
