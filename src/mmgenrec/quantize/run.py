"""Stage driver: item embeddings (.npy) -> RQ-VAE -> collision-free semantic-ID index (JSON) plus stats (JSON).

The index maps each item id (row of the embedding matrix, as a string) to its tokens, one per level:
``{"0": ["<a_12>", "<b_7>", "<c_3>", "<d_31>"], ...}``. Level l uses letter ``a + l``.
"""

from __future__ import annotations

import logging
import re
import string
import time
from pathlib import Path

import numpy as np
import torch

from mmgenrec.io import InputError, read_json, write_json
from mmgenrec.quantize.collisions import collision_stats, resolve_nearest_free
from mmgenrec.quantize.rqvae import encode_with_distances, reconstruction_mse, train_rqvae

log = logging.getLogger(__name__)

LETTERS = string.ascii_lowercase
TOKEN = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")
POLICIES = ("nearest_free", "none")
MAX_HISTORY_ROWS = 500  # the stats file keeps at most about this many per-epoch rows


def code_tokens(levels: int, codebook_size: int) -> list[str]:
    """Every item token, level by level: ``<a_0> .. <a_{K-1}>, <b_0> .. <b_{K-1}>, ...``."""
    if not 1 <= levels <= len(LETTERS):
        raise ValueError(f"levels must be between 1 and {len(LETTERS)}, got {levels}")
    return [f"<{LETTERS[l]}_{c}>" for l in range(levels) for c in range(codebook_size)]


def codes_to_index(codes: np.ndarray) -> dict[str, list[str]]:
    """``{"<item id>": ["<a_..>", "<b_..>", ...]}`` for a ``[n_items, levels]`` code array (row i = item i)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] > len(LETTERS):
        raise ValueError(f"codes must be [n_items, levels <= {len(LETTERS)}], got shape {codes.shape}")
    return {str(i): [f"<{LETTERS[l]}_{int(c)}>" for l, c in enumerate(row)] for i, row in enumerate(codes)}


def load_index(path: str | Path, *, allow_collisions: bool = False,
               codebook_size: int | None = None) -> dict[int, list[str]]:
    """Read and validate an index written by :func:`quantize_file`; raise InputError naming the file and item.

    Checks: item ids are exactly 0..n-1, every item has the same number of tokens, token l reads ``<letter_code>``
    with letter ``a + l`` (and code < ``codebook_size`` when given), and no two items share a tuple unless
    ``allow_collisions``.
    """
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: expected a non-empty JSON object mapping item ids to token lists")

    index: dict[int, list[str]] = {}
    for key, tokens in raw.items():
        if not (isinstance(key, str) and key.isdigit() and str(int(key)) == key):
            raise InputError(f"{path}: item {key!r}: item ids must be non-negative integers written plainly")
        index[int(key)] = tokens
    for item in range(len(index)):
        if item not in index:
            raise InputError(f"{path}: item {item} is missing (ids must run 0..{len(index) - 1} without gaps)")

    levels = None
    seen: dict[tuple[str, ...], int] = {}
    for item in range(len(index)):
        tokens = index[item]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise InputError(f"{path}: item {item}: expected a non-empty list of token strings, got {tokens!r}")
        if levels is None:
            levels = len(tokens)
            if levels > len(LETTERS):
                raise InputError(f"{path}: item {item}: {levels} tokens, at most {len(LETTERS)} levels allowed")
        if len(tokens) != levels:
            raise InputError(f"{path}: item {item}: {len(tokens)} tokens, but item 0 has {levels}")
        for level, token in enumerate(tokens):
            m = TOKEN.fullmatch(token)
            if m is None or m.group(1) != LETTERS[level]:
                raise InputError(f"{path}: item {item}: token {level} is {token!r}, "
                                 f"expected <{LETTERS[level]}_N>")
            if codebook_size is not None and int(m.group(2)) >= codebook_size:
                raise InputError(f"{path}: item {item}: token {token!r} is outside the codebook of "
                                 f"{codebook_size} codes")
        key = tuple(tokens)
        if key in seen and not allow_collisions:
            raise InputError(f"{path}: item {item}: same tokens {tokens} as item {seen[key]} (collision)")
        seen.setdefault(key, item)
    return index


def level_usage(codes: np.ndarray, codebook_size: int) -> list[dict]:
    """Per level: codes used, utilisation (used / K) and perplexity (exp of the entropy of code usage)."""
    rows = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        p = counts[counts > 0] / counts.sum()
        used = int((counts > 0).sum())
        rows.append({"level": level, "used_codes": used, "utilisation": used / codebook_size,
                     "perplexity": float(np.exp(-(p * np.log(p)).sum()))})
    return rows


def load_embeddings(path: str | Path) -> np.ndarray:
    """The ``[n_items, dim]`` float32 matrix in ``path``; InputError if unreadable, not 2-D, empty or non-finite."""
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npy array ({e})") from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"{path}: expected a non-empty 2-D [n_items, dim] array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{path}: expected floating-point embeddings, got dtype {x.dtype}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{path}: row {rows[0]} (item {rows[0]}) has non-finite values "
                         f"({len(rows)} bad rows in all)")
    return x.astype(np.float32, copy=False)


def _subsample(history: list[dict]) -> list[dict]:
    """At most about MAX_HISTORY_ROWS rows, keeping the first, the last and every row with a collision rate."""
    step = max(1, len(history) // MAX_HISTORY_ROWS)
    return [row for i, row in enumerate(history)
            if i % step == 0 or i == len(history) - 1 or row["collision_rate"] is not None]


def quantize_file(npy_path: str | Path, index_path: str | Path, stats_path: str | Path, *, levels: int,
                  codebook_size: int, hidden: list[int], latent_dim: int, epochs: int, batch_size: int, lr: float,
                  weight_decay: float = 0.0, beta: float = 0.25, batch_norm: bool = False,
                  sinkhorn_last_level: bool = True, collision_policy: str = "nearest_free", seed: int = 0,
                  standardize: bool = False, device: str = "auto") -> dict:
    """Train an RQ-VAE on the embeddings in ``npy_path``, write the item index and the stats; return the stats.

    ``standardize`` z-scores every input dimension first (LC-Rec does not; hidden states of LLMs carry a large
    shared offset and a few outlier dimensions, which otherwise dominate the reconstruction loss and let the
    first levels collapse onto one code). ``reconstruction_mse`` is measured in the space the RQ-VAE saw.
    """
    t0 = time.time()
    if collision_policy not in POLICIES:
        raise ValueError(f"collision_policy must be one of {POLICIES}, got {collision_policy!r}")
    if not 1 <= levels <= len(LETTERS):
        raise ValueError(f"levels must be between 1 and {len(LETTERS)}, got {levels}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    x = load_embeddings(npy_path)
    if standardize:
        x = ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)
    log.info("%s: %d items x %d dims; training on %s", npy_path, x.shape[0], x.shape[1], device)
    model, history = train_rqvae(
        x, levels=levels, codebook_size=codebook_size, hidden=hidden, latent_dim=latent_dim, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, beta=beta, batch_norm=batch_norm, seed=seed,
        device=device,
    )

    codes, last_dist = encode_with_distances(model, x, sinkhorn_last_level=sinkhorn_last_level)
    before = collision_stats(codes)
    log.info("before collision policy: %d unique tuples for %d items (collision rate %.4f)",
             before["n_unique"], before["n_items"], before["collision_rate"])
    if collision_policy == "nearest_free":
        codes = resolve_nearest_free(codes, last_dist)
    after = collision_stats(codes)
    log.info("after %s: collision rate %.4f", collision_policy, after["collision_rate"])
    if collision_policy != "none" and after["collision_rate"] > 0:
        raise ValueError(f"{npy_path}: {after['items_in_collisions']} items still collide after {collision_policy}")

    stats = {
        "n_items": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "levels": levels,
        "codebook_size": codebook_size,
        "collision_policy": collision_policy,
        "sinkhorn_last_level": sinkhorn_last_level,
        "standardize": standardize,
        "collisions_before": before,
        "collisions_after": after,
        "per_level": level_usage(codes, codebook_size),
        "reconstruction_mse": reconstruction_mse(model, x, codes),  # decoded from the written codes
        "final_loss": history[-1]["loss"] if history else None,
        "best_loss": min((row["loss"] for row in history), default=None),
        "history": _subsample(history),
        "seconds": round(time.time() - t0, 2),
        "seed": seed,
        "device": device,
    }
    write_json(index_path, codes_to_index(codes), indent=None)
    write_json(stats_path, stats)
    log.info("wrote %s and %s in %.1f s", index_path, stats_path, stats["seconds"])
    return stats
