"""Item-to-item embedding quality: do an item's nearest neighbours contain the item it co-occurs with most?

Label of item ``i`` (:func:`cooccurrence_labels`): the item that shares the most training sequences with ``i``
(each sequence counted once per pair; training part = every user's sequence without its last two items, the
validation and test targets; ties go to the lower id). Items that co-occur with nothing are not queried.
Search (:func:`i2i_metrics`): L2-normalised vectors in a faiss ``IndexFlatIP`` (inner product = cosine), the query
item itself removed from its own result list; ``Hit@k`` = label among the k nearest, ``NDCG@10`` = 1/log2(rank+2).

Vector sources (:func:`evaluate_i2i`): the raw item embeddings the IDs were built from (``raw``), the same vectors
decoded back from each item's semantic ID by the tokenizer (``reconstruction``: the RQ-VAE decoder, or the
codebook sums for k-means/PQ; ``ids/rqvae/reconstruction.npy``) and, per finetuned model, the mean of the item's
ID-token rows in the finetuned input embedding matrix (``tokens:<method>``), read from the adapter's safetensors
file (:func:`adapter_token_rows`): no model is loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmgenrec.io import InputError, read_json, write_json

log = logging.getLogger(__name__)


def cooccurrence_labels(train_seqs: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Per item, the item sharing the most training sequences with it (lowest id on ties); -1 if none."""
    rows, cols = [], []
    for seq in train_seqs:
        u = np.unique(np.asarray(seq, dtype=np.int64))
        if u.size and (u[0] < 0 or u[-1] >= n_items):
            raise ValueError(f"item ids must lie in [0, {n_items}), got {u[0]}..{u[-1]}")
        if u.size > 1:
            a, b = np.meshgrid(u, u, indexing="ij")
            off = a != b
            rows.append(a[off])
            cols.append(b[off])
    labels = np.full(n_items, -1, dtype=np.int64)
    if not rows:
        return labels
    # count each (item, other) pair over sequences, then per item the largest count, ties to the lowest other id
    pairs, counts = np.unique(np.concatenate(rows) * n_items + np.concatenate(cols), return_counts=True)
    item, other = pairs // n_items, pairs % n_items
    order = np.lexsort((other, -counts, item))  # by item, then count descending, then other ascending
    item, other = item[order], other[order]
    first = np.ones(len(item), dtype=bool)
    first[1:] = item[1:] != item[:-1]
    labels[item[first]] = other[first]
    return labels


def i2i_metrics(vectors: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                ndcg_k: int = 10) -> dict[str, float]:
    """Hit@k and NDCG@ndcg_k of the label among each labelled item's nearest neighbours (cosine, self excluded)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != labels.shape[0]:
        raise ValueError(f"vectors {x.shape} and labels {labels.shape} disagree")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain non-finite values")
    faiss.normalize_L2(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    queries = np.flatnonzero(labels >= 0)
    if queries.size == 0:
        raise ValueError("no item has a co-occurrence label")
    depth = min(max(max(ks), ndcg_k) + 1, x.shape[0])
    _, nn = index.search(x[queries], depth)
    ranks = np.full(queries.size, -1, dtype=np.int64)
    for qi, (q, row) in enumerate(zip(queries, nn)):
        row = [int(j) for j in row if j != q and j >= 0]  # drop the query itself wherever it lands
        if labels[q] in row:
            ranks[qi] = row.index(int(labels[q]))
    found = ranks >= 0
    out = {f"Hit@{k}": float((found & (ranks < k)).mean()) for k in ks}
    out[f"NDCG@{ndcg_k}"] = float(np.where(found & (ranks < ndcg_k), 1 / np.log2(np.maximum(ranks, 0) + 2), 0).mean())
    out["n_queries"] = int(queries.size)
    return out


def token_mean_vectors(embedding: np.ndarray, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Row ``i``: the mean of ``embedding[token_ids[i]]`` (an item's ID-token rows)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    return embedding[ids].mean(axis=1)


def adapter_token_rows(adapter_dir) -> dict[int, np.ndarray]:
    """The finetuned input-embedding rows of the new tokens, read from the adapter folder alone (no model load):
    ``{token id: row}`` from ``adapter_model.safetensors`` (peft's ``embed_tokens...trainable_tokens_delta``, whose
    rows follow ``adapter_config.json``'s ``trainable_token_indices``; or a ``modules_to_save`` copy of the whole
    embedding matrix, whose rows are the token ids themselves)."""
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    weights, config = adapter_dir / "adapter_model.safetensors", adapter_dir / "adapter_config.json"
    if not weights.is_file() or not config.is_file():
        raise InputError(f"{adapter_dir}: no adapter_model.safetensors / adapter_config.json")
    with safe_open(str(weights), framework="np") as f:
        keys = list(f.keys())
        delta = [k for k in keys if "embed_tokens" in k and k.endswith("trainable_tokens_delta")]
        full = [k for k in keys if "embed_tokens" in k and "modules_to_save" in k and k.endswith("weight")]
        if delta:
            rows = f.get_tensor(delta[0]).astype(np.float32)
            indices = read_json(config).get("trainable_token_indices")
            ids = indices.get("embed_tokens") if isinstance(indices, dict) else indices
            if not ids or len(ids) != rows.shape[0]:
                raise InputError(f"{config}: trainable_token_indices do not match the {rows.shape[0]} rows of "
                                 f"{delta[0]} in {weights}")
            return {int(t): rows[i] for i, t in enumerate(ids)}
        if full:
            matrix = f.get_tensor(full[0]).astype(np.float32)
            return {t: matrix[t] for t in range(matrix.shape[0])}
    raise InputError(f"{weights}: no trainable embedding rows (trainable_tokens_delta or modules_to_save)")


def finetuned_token_vectors(adapter_dir, index: dict[int, list[str]]) -> np.ndarray:
    """Mean of each item's ID-token rows in the finetuned input embedding matrix, from the adapter file and the
    adapter's own tokenizer vocabulary (``tokenizer.json``), without loading the model."""
    from mmgenrec.models.loading import load_processor

    vocab = load_processor(adapter_dir).tokenizer.get_vocab()
    missing = sorted({t for toks in index.values() for t in toks if t not in vocab})
    if missing:
        raise InputError(f"{adapter_dir}: tokenizer lacks index tokens such as {missing[:5]}")
    rows = adapter_token_rows(adapter_dir)
    untrained = sorted({t for toks in index.values() for t in toks if vocab[t] not in rows})
    if untrained:
        raise InputError(f"{adapter_dir}: the adapter holds no trained row for index tokens such as {untrained[:5]}")
    return np.stack([np.mean([rows[vocab[t]] for t in index[i]], axis=0) for i in range(len(index))])


def evaluate_i2i(inter_json, embeddings_npy, index_json, out_path, *, reconstruction_npy=None, base_dir=None,
                 adapters: dict[str, str | Path] | None = None, ks=(1, 5, 10), ndcg_k: int = 10,
                 device: str = "auto", dtype: str = "auto") -> dict:
    """I2I metrics of every vector source -> ``out_path`` (``{"sources": {name: metrics}, ...}``). ``base_dir``,
    ``device`` and ``dtype`` are accepted for the callers but unused: the token rows come from the adapter files."""
    from mmgenrec.evaluate.seqrec import load_index_file
    from mmgenrec.quantize.run import load_embeddings

    t0 = time.time()
    sequences = read_json(inter_json)
    raw = load_embeddings(embeddings_npy)
    index = load_index_file(index_json)
    n_items = raw.shape[0]
    if len(index) != n_items:
        raise InputError(f"{index_json}: {len(index)} items, but {embeddings_npy} has {n_items} rows")
    labels = cooccurrence_labels([seq[:-2] for seq in sequences.values()], n_items)
    sources = {"raw": i2i_metrics(raw, labels, ks, ndcg_k)}
    if reconstruction_npy is not None:
        recon = load_embeddings(reconstruction_npy)
        if recon.shape != raw.shape:
            raise InputError(f"{reconstruction_npy}: shape {recon.shape}, but {embeddings_npy} is {raw.shape}")
        sources["reconstruction"] = i2i_metrics(recon, labels, ks, ndcg_k)
    for method, adapter in (adapters or {}).items():
        vec = finetuned_token_vectors(adapter, index)
        sources[f"tokens:{method}"] = i2i_metrics(vec, labels, ks, ndcg_k)
    result = {"sources": sources, "n_items": int(n_items), "n_labelled": int((labels >= 0).sum()),
              "label": "most co-occurring item in training sequences",
              "seconds": round(time.time() - t0, 2)}
    write_json(out_path, result)
    log.info("i2i: %s", {k: round(v["Hit@10"], 4) for k, v in sources.items()})
    return result
