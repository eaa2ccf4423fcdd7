"""CoLLM's collaborative side: a matrix-factorisation model on the training part, a Faiss inner-product retriever
over its item vectors (CoLLM-FaissRet), the pointwise evaluation sample and AUC / UAUC.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm


def train_mf(train: Mapping[str, Sequence[int]], n_items: int, *, dim: int = 16, epochs: int = 50, lr: float = 0.01,
             weight_decay: float = 1e-4, seed: int = 0) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """BPR-trained MF on the training parts (one sampled negative per positive and epoch, full batch).

    Returns (user -> row, user vectors, item vectors); an item never seen in training keeps its random init
    (scaled like the rest), which is what makes it "cold" for CoLLM.
    """
    g = torch.Generator().manual_seed(seed)
    users = {u: r for r, u in enumerate(train)}
    pairs = np.array([(users[u], i) for u, seq in train.items() for i in seq], dtype=np.int64).reshape(-1, 2)
    seen = {users[u]: set(seq) for u, seq in train.items()}
    U = torch.nn.Parameter(torch.randn(len(users), dim, generator=g) * 0.1)
    V = torch.nn.Parameter(torch.randn(n_items, dim, generator=g) * 0.1)
    opt = torch.optim.Adam([U, V], lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    pu, pi = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])
    for _ in tqdm(range(epochs), desc="MF (BPR)", unit="epoch"):
        neg = rng.integers(0, n_items, size=len(pairs))
        for r in range(len(pairs)):  # resample negatives that the user has in training
            while neg[r] in seen[int(pairs[r, 0])]:
                neg[r] = rng.integers(0, n_items)
        nj = torch.from_numpy(neg)
        x = (U[pu] * (V[pi] - V[nj])).sum(1)
        loss = -torch.nn.functional.logsigmoid(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return users, U.detach().numpy().astype(np.float32), V.detach().numpy().astype(np.float32)


def faiss_candidates(user_vecs: np.ndarray, item_vecs: np.ndarray, histories: Sequence[Sequence[int]], k: int
                     ) -> tuple[list[list[int]], float]:
    """Top-``k`` items by inner product for each query vector (history items dropped), with a Faiss flat IP index;
    returns the lists and the mean retrieval time per user in milliseconds (index search + filtering)."""
    import faiss

    index = faiss.IndexFlatIP(item_vecs.shape[1])
    index.add(np.ascontiguousarray(item_vecs, dtype=np.float32))
    out = []
    t0 = time.perf_counter()
    for vec, hist in zip(user_vecs, histories):
        seen = set(hist)
        depth = min(k + len(seen), index.ntotal)
        _, ids = index.search(np.ascontiguousarray(vec[None, :], dtype=np.float32), depth)
        out.append([int(i) for i in ids[0] if i >= 0 and int(i) not in seen][:k])
    ms = 1000 * (time.perf_counter() - t0) / max(len(out), 1)
    return out, ms


def pointwise_sample(examples, sequences: Mapping[str, Sequence[int]], n_items: int, n_negatives: int, seed: int,
                     split: str) -> list[tuple[str, list[int], int, int]]:
    """``(user, history, item, label)``: each example's target (1) and ``n_negatives`` items the user never
    interacted with (0), drawn from ``(seed, split, user)``."""
    out = []
    for ex in examples:
        rng = random.Random(f"{seed}|{split}|{ex.user}")
        seen = set(sequences[ex.user])
        pool = [i for i in range(n_items) if i not in seen]
        out.append((ex.user, ex.history, ex.target, 1))
        out += [(ex.user, ex.history, int(i), 0) for i in rng.sample(pool, min(n_negatives, len(pool)))]
    return out


def auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC (Mann-Whitney, ties count one half); None when one class is absent."""
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def uauc(users: Sequence[str], labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Mean over users (with both classes) of the per-user AUC, as CoLLM reports it (unweighted)."""
    by: dict[str, tuple[list, list]] = {}
    for u, y, s in zip(users, labels, scores):
        by.setdefault(u, ([], []))
        by[u][0].append(y)
        by[u][1].append(s)
    vals = [a for a in (auc(y, s) for y, s in by.values()) if a is not None]
    return float(np.mean(vals)) if vals else None


def pointwise_metrics(sample, scores, warm_items: set[int], prefix: str = "") -> dict:
    """AUC / UAUC over the sample, and over its warm-item rows and its cold-item rows separately."""
    users, items, labels = [r[0] for r in sample], [r[2] for r in sample], [r[3] for r in sample]
    out = {}
    for name, keep in (("", None), ("_warm", True), ("_cold", False)):
        idx = [i for i, it in enumerate(items) if keep is None or (it in warm_items) == keep]
        y, s, u = [labels[i] for i in idx], [scores[i] for i in idx], [users[i] for i in idx]
        out[f"{prefix}AUC{name}"] = auc(y, s)
        out[f"{prefix}UAUC{name}"] = uauc(u, y, s)
        out[f"{prefix}n_rows{name}"] = len(idx)
    return out
