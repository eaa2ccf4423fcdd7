"""Item tokenizers behind one interface: embeddings ``[n, dim]`` -> codes ``[n, levels]`` (+ what the policies need).

* ``rqvae``: the RQ-VAE of :mod:`mmgenrec.quantize.rqvae` (LC-Rec's recipe).
* ``rqkmeans``: residual k-means on the embeddings themselves: level l is faiss k-means on what levels < l left.
* ``pq``: faiss product quantisation: the vector is cut into ``levels`` sub-vectors, each with its own codebook
  (columns are zero-padded to a multiple of ``levels``); the codes are not hierarchical.
* ``opq``: PQ after a learned rotation (``faiss.OPQMatrix``), which balances the variance over the sub-vectors.

PQ and OPQ need a power-of-two ``codebook_size`` (faiss stores ``log2(K)``-bit codes). Every tokenizer returns a
:class:`Fitted`: the codes, the squared distances of every item's last-level (sub-)vector to each last-level code
(which ``nearest_free`` and ``sinkhorn`` use), a decoder from codes back to the input space, a training history and
any checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import faiss
import numpy as np

from mmgenrec.quantize.rqvae import decode, encode_with_distances, kmeans, train_rqvae

log = logging.getLogger(__name__)

TOKENIZERS = ("rqvae", "rqkmeans", "opq", "pq")


@dataclass
class Fitted:
    codes: np.ndarray  # [n, levels] int64
    last_distances: np.ndarray  # [n, K] squared distances of the last-level (sub-)vector to each last-level code
    decode: Callable[[np.ndarray], np.ndarray]  # codes [m, levels] -> [m, dim] in the space the tokenizer saw
    history: list[dict] = field(default_factory=list)
    checkpoints: dict = field(default_factory=dict)  # rqvae: best_loss / best_collision -> {epoch, loss, state, ...}
    facts: dict = field(default_factory=dict)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return faiss.pairwise_distances(np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, np.float32))


def _nbits(codebook_size: int, tokenizer: str) -> int:
    nbits = int(codebook_size).bit_length() - 1
    if 1 << nbits != codebook_size:
        raise ValueError(f"tokenizer {tokenizer} needs a power-of-two codebook_size, got {codebook_size}")
    return nbits


def _enough_rows(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``x``, or with fewer rows than ``k`` codes, ``x`` repeated with tiny noise (faiss k-means needs >= k rows)."""
    if len(x) >= k:
        return x
    log.warning("only %d rows for %d codes: training on the rows repeated with small noise", len(x), k)
    reps = -(-k // len(x))
    noise = np.random.default_rng(seed).normal(0, 1e-3 * (float(x.std()) or 1.0), (len(x) * reps, x.shape[1]))
    return np.ascontiguousarray(np.concatenate([x] * reps) + noise, dtype=np.float32)


def fit_rqkmeans(x: np.ndarray, *, levels: int, codebook_size: int, seed: int = 0,
                 kmeans_iters: int = 100) -> Fitted:
    """Residual k-means (faiss) on the rows of ``x``; history holds each level's mean squared residual after it."""
    r = np.ascontiguousarray(x, dtype=np.float32).copy()
    books, codes, history = [], [], []
    for level in range(levels):
        centroids = kmeans(r, codebook_size, niter=kmeans_iters, seed=seed + level)
        d = _sq_dist(r, centroids)
        idx = d.argmin(1)
        r -= centroids[idx]
        books.append(centroids)
        codes.append(idx)
        history.append({"level": level, "residual_mse": float((r ** 2).mean())})
    books_arr = np.stack(books)

    def dec(c: np.ndarray) -> np.ndarray:
        return sum(books_arr[l][np.asarray(c)[:, l]] for l in range(levels))

    return Fitted(np.stack(codes, 1).astype(np.int64), d, dec, history)


def fit_pq(x: np.ndarray, *, levels: int, codebook_size: int, rotate: bool, seed: int = 0,
           kmeans_iters: int = 100) -> Fitted:
    """(O)PQ with faiss; codes are each sub-vector's nearest centroid (the same as ``pq.compute_codes``)."""
    name = "opq" if rotate else "pq"
    nbits = _nbits(codebook_size, name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    padded = -(-dim // levels) * levels
    rotation = None
    if rotate:
        rotation = faiss.OPQMatrix(dim, levels, padded)
        rotation.niter = 25
        rotation.verbose = False
        inner_pq = faiss.ProductQuantizer(padded, levels, nbits)  # the rotation's own PQ: same K as ours
        rotation.pq = inner_pq
        rotation.train(_enough_rows(x, codebook_size, seed))
        xt = rotation.apply(x)
    else:
        xt = np.zeros((n, padded), dtype=np.float32)
        xt[:, :dim] = x
    pq = faiss.ProductQuantizer(padded, levels, nbits)
    pq.cp.niter = kmeans_iters
    pq.cp.seed = seed
    pq.train(_enough_rows(xt, codebook_size, seed))
    dsub = pq.dsub
    cent = faiss.vector_to_array(pq.centroids).reshape(levels, codebook_size, dsub)
    codes, history = [], []
    for m in range(levels):
        d = _sq_dist(xt[:, m * dsub:(m + 1) * dsub], cent[m])
        codes.append(d.argmin(1))
        history.append({"level": m, "subspace_mse": float(d.min(1).sum() / (n * dsub))})

    def dec(c: np.ndarray) -> np.ndarray:
        c = np.asarray(c)
        out = np.concatenate([cent[m][c[:, m]] for m in range(levels)], axis=1).astype(np.float32)
        if rotation is not None:
            return rotation.reverse_transform(np.ascontiguousarray(out))[:, :dim]
        return out[:, :dim]

    return Fitted(np.stack(codes, 1).astype(np.int64), d, dec, history, facts={"padded_dim": int(padded)})


def fit_tokenizer(tokenizer: str, x: np.ndarray, *, levels: int, codebook_size: int, seed: int = 0,
                  device: str = "cpu", sinkhorn_encode: bool = False, kmeans_iters: int = 100,
                  **rqvae_cfg) -> Fitted:
    """Fit ``tokenizer`` (one of :data:`TOKENIZERS`) on ``x``; ``rqvae_cfg`` goes to :func:`train_rqvae` only."""
    if tokenizer == "rqvae":
        model, history, best = train_rqvae(x, levels=levels, codebook_size=codebook_size, seed=seed, device=device,
                                           kmeans_iters=kmeans_iters, **rqvae_cfg)
        codes, dist = encode_with_distances(model, x, balanced=sinkhorn_encode)
        return Fitted(codes, dist, lambda c: decode(model, c), history, best,
                      {"parameters": sum(p.numel() for p in model.parameters())})
    if tokenizer == "rqkmeans":
        return fit_rqkmeans(x, levels=levels, codebook_size=codebook_size, seed=seed, kmeans_iters=kmeans_iters)
    if tokenizer in ("pq", "opq"):
        return fit_pq(x, levels=levels, codebook_size=codebook_size, rotate=tokenizer == "opq", seed=seed,
                      kmeans_iters=kmeans_iters)
    raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
