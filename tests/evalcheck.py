"""Independent expectations for the end-to-end evaluation checks (``test_workflow_evaluate.py``): text metrics
scored straight from a generations file with sacrebleu / rouge_score, and I2I metrics recomputed by brute force
(dicts and a dense cosine matrix), without the project's evaluation code. Unit-tested on hand-made cases in
``test_evalcheck.py``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np


def read_generations(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def text_scores(generations: list[dict]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 0-100) and mean ROUGE-L F1 (rouge_score, stemmed) of ``generation`` vs ``reference``."""
    import sacrebleu
    from rouge_score import rouge_scorer

    hyps = [g["generation"] for g in generations]
    refs = [g["reference"] for g in generations]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]
    return {"BLEU": sacrebleu.BLEU().corpus_score(hyps, [refs]).score, "ROUGE-L": sum(rouge) / len(rouge)}


def cooccurrence_label(train_seqs: list[list[int]]) -> dict[int, int]:
    """Per item, the other item sharing the most training sequences (each sequence once per pair; lowest id on
    ties); items co-occurring with nothing are absent."""
    counts: dict[int, Counter] = {}
    for seq in train_seqs:
        items = set(seq)
        for i in items:
            for j in items - {i}:
                counts.setdefault(i, Counter())[j] += 1
    return {i: min(c, key=lambda j: (-c[j], j)) for i, c in counts.items()}


def i2i_scores(vectors: np.ndarray, train_seqs: list[list[int]], ks=(1, 5, 10), ndcg_k: int = 10) -> dict:
    """Hit@k / NDCG@ndcg_k of each labelled item's label among its cosine neighbours (itself excluded); rank =
    the number of other items strictly more similar than the label."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    labels = cooccurrence_label(train_seqs)
    ranks = []
    for q, lab in sorted(labels.items()):
        s = np.delete(sim[q], q)
        target = sim[q, lab]
        ranks.append(int((s > target + 1e-6).sum()))
    ranks = np.array(ranks)
    out = {f"Hit@{k}": float((ranks < k).mean()) for k in ks}
    out[f"NDCG@{ndcg_k}"] = float(np.where(ranks < ndcg_k, 1 / np.log2(ranks + 2), 0).mean())
    out["n_queries"] = len(ranks)
    return out
