"""Stage driver: item embeddings (.npy) -> tokenizer -> collision policy -> semantic-ID index (JSON) plus stats.

The index maps each item id (row of the embedding matrix, as a string) to its tokens, one per level:
``{"0": ["<a_12>", "<b_7>", "<c_3>", "<d_31>"], ...}``. Level l uses letter ``a + l``; the ``suffix`` policy adds
one more level (``<e_N>`` after four). MQL4Rec's multimodal index (:func:`quantize_mql4rec`) gives every item its
text tokens (lowercase letters) followed by its image tokens (the same letters in uppercase):
``["<a_3>", "<b_1>", "<c_9>", "<d_0>", "<A_7>", "<B_2>", "<C_5>", "<D_4>"]``.
"""

from __future__ import annotations

import logging
import re
import string
import time
from pathlib import Path

import numpy as np
import torch

from mmgenrec.io import InputError, atomic_dir, atomic_path, read_json, save_npy, write_json
from mmgenrec.quantize.collisions import POLICIES, collision_stats, resolve
from mmgenrec.quantize.tokenizers import TOKENIZERS, fit_tokenizer

log = logging.getLogger(__name__)

LETTERS = string.ascii_lowercase
UPPER = string.ascii_uppercase
TOKEN = re.compile(r"<([a-zA-Z])_(0|[1-9][0-9]*)>")
MAX_HISTORY_ROWS = 500  # the stats file keeps at most about this many per-epoch rows


def code_tokens(levels: int, codebook_size: int, letters: str = LETTERS) -> list[str]:
    """Every item token, level by level: ``<a_0> .. <a_{K-1}>, <b_0> .. <b_{K-1}>, ...``."""
    if not 1 <= levels <= len(letters):
        raise ValueError(f"levels must be between 1 and {len(letters)}, got {levels}")
    return [f"<{letters[l]}_{c}>" for l in range(levels) for c in range(codebook_size)]


def codes_to_index(codes: np.ndarray, letters: str = LETTERS) -> dict[str, list[str]]:
    """``{"<item id>": ["<a_..>", "<b_..>", ...]}`` for a ``[n_items, levels]`` code array (row i = item i)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] > len(letters):
        raise ValueError(f"codes must be [n_items, levels <= {len(letters)}], got shape {codes.shape}")
    return {str(i): [f"<{letters[l]}_{int(c)}>" for l, c in enumerate(row)] for i, row in enumerate(codes)}


def expected_letters(tokens: list[str]) -> str | None:
    """The letters a valid token list must carry, given its case layout: ``abcd``, ``abcdABCD`` (MQL4Rec:
    lowercase run from ``a``, then an uppercase run from ``A``) or ``ABCD`` (an image-only MQL4Rec id set);
    None when no layout fits."""
    lower = 0
    while lower < len(tokens) and TOKEN.fullmatch(tokens[lower]) and TOKEN.fullmatch(tokens[lower]).group(1).islower():
        lower += 1
    upper = len(tokens) - lower
    if lower == 0 and 0 < upper <= len(UPPER):  # an image-only MQL4Rec id set (the published vitemb files)
        return UPPER[:upper]
    if lower == 0 or lower > len(LETTERS) or upper > len(UPPER):
        return None
    return LETTERS[:lower] + UPPER[:upper]


def load_index(path: str | Path, *, allow_collisions: bool = False,
               codebook_size: int | None = None) -> dict[int, list[str]]:
    """Read and validate an index written by :func:`quantize_file`; raise InputError naming the file and item.

    Checks: item ids are exactly 0..n-1, every item has the same number of tokens, token l reads ``<letter_code>``
    with letter ``a + l`` (MQL4Rec layout: lowercase ``a, b, ..`` then uppercase ``A, B, ..``; see
    :func:`expected_letters`), code < ``codebook_size`` when given, and no two items share a tuple unless
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

    levels, letters = None, ""
    seen: dict[tuple[str, ...], int] = {}
    for item in range(len(index)):
        tokens = index[item]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise InputError(f"{path}: item {item}: expected a non-empty list of token strings, got {tokens!r}")
        if levels is None:
            levels = len(tokens)
            letters = expected_letters(tokens)
            if letters is None:
                raise InputError(f"{path}: item {item}: tokens {tokens} are neither <a_N><b_N>.. (at most "
                                 f"{len(LETTERS)} levels) nor lowercase then uppercase levels (MQL4Rec)")
        if len(tokens) != levels:
            raise InputError(f"{path}: item {item}: {len(tokens)} tokens, but item 0 has {levels}")
        for level, token in enumerate(tokens):
            m = TOKEN.fullmatch(token)
            if m is None or m.group(1) != letters[level]:
                raise InputError(f"{path}: item {item}: token {level} is {token!r}, "
                                 f"expected <{letters[level]}_N>")
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
            if i % step == 0 or i == len(history) - 1 or row.get("collision_rate") is not None]




def plot_stats(stats: dict, png_path: str | Path) -> None:
    """Training curve (loss, reconstruction, quantisation loss, collision rate by epoch; for k-means/PQ the
    per-level error) and per-level code utilisation/perplexity, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    hist = stats.get("history") or []
    if hist and "epoch" in hist[0]:
        epochs = [h["epoch"] for h in hist]
        for key in ("loss", "recon", "quant"):
            ax1.plot(epochs, [h[key] for h in hist], label=key)
        ax1.set_yscale("log")
        ax1.set_xlabel("epoch")
        checked = [(h["epoch"], h["collision_rate"]) for h in hist if h["collision_rate"] is not None]
        if checked:
            twin = ax1.twinx()
            twin.plot(*zip(*checked), "k.--", label="collision rate")
            twin.set_ylabel("collision rate (nearest codes)")
            twin.legend(loc="upper right")
        ax1.legend(loc="upper left")
    elif hist:
        key = next(k for k in hist[0] if k != "level")
        ax1.bar([h["level"] for h in hist], [h[key] for h in hist])
        ax1.set_xlabel("level")
        ax1.set_ylabel(key)
    ax1.set_title(f"{stats['tokenizer']} training")
    levels = [lv["level"] for lv in stats["per_level"]]
    ax2.bar(levels, [lv["perplexity"] for lv in stats["per_level"]], label="perplexity")
    ax2.bar(levels, [lv["used_codes"] for lv in stats["per_level"]], fill=False, edgecolor="k", label="codes used")
    ax2.axhline(stats["codebook_size"], color="grey", ls=":", label="codebook size")
    ax2.set_xlabel("level")
    ax2.set_title(f"code usage; collisions {stats['collisions_before']['collision_rate']:.4f} -> "
                  f"{stats['collisions_after']['collision_rate']:.4f} ({stats['collision_policy']})")
    ax2.legend()
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def standardized(x: np.ndarray) -> np.ndarray:
    """Every dimension z-scored (what the tokenizer sees when ``standardize``)."""
    return ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)


def reconstruction(fitted, codes: np.ndarray, x: np.ndarray, *, levels: int, standardize: bool = False) -> np.ndarray:
    """Each item's vector decoded from its written codes (RQ-VAE decoder; codebook sums for k-means/PQ), in the
    input space of ``x`` (the z-scoring undone when ``standardize``). The suffix level carries no vector."""
    out = fitted.decode(codes[:, :levels]).astype(np.float32)
    if standardize:
        out = out * (x.std(0) + 1e-6) + x.mean(0)
    return np.ascontiguousarray(out, dtype=np.float32)


def check_choices(tokenizer: str = "rqvae", collision_policy: str = "nearest_free", **_) -> None:
    """ValueError naming the key when ``tokenizer`` or ``collision_policy`` is not a known choice."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    if collision_policy not in POLICIES:
        raise ValueError(f"collision_policy must be one of {POLICIES}, got {collision_policy!r}")


def quantize_matrix(x: np.ndarray, *, tokenizer: str = "rqvae", levels: int, codebook_size: int,
                    collision_policy: str = "nearest_free", collision_rounds: int = 20,
                    collision_epsilon: float = 0.003, standardize: bool = False, seed: int = 0,
                    device: str = "auto", **tokenizer_cfg) -> tuple[np.ndarray, dict, object]:
    """Codes ``[n, levels (+1 for suffix)]`` for the rows of ``x``, the stats dict and the fitted tokenizer.

    ``standardize`` z-scores every input dimension first (LC-Rec does not; hidden states of LLMs carry a large
    shared offset and a few outlier dimensions, which otherwise dominate the reconstruction loss and let the
    first levels collapse onto one code). ``reconstruction_mse`` is measured in the space the tokenizer saw.
    """
    t0 = time.time()
    check_choices(tokenizer, collision_policy)
    if not 1 <= levels + (collision_policy == "suffix") <= len(LETTERS):
        raise ValueError(f"levels must be between 1 and {len(LETTERS)} (suffix policy: one fewer), got {levels}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if standardize:
        x = standardized(x)
    if tokenizer != "rqvae":
        tokenizer_cfg = {k: v for k, v in tokenizer_cfg.items() if k == "kmeans_iters"}
    log.info("%s: %d items x %d dims on %s, %d levels x %d codes, policy %s", tokenizer, x.shape[0], x.shape[1],
             device, levels, codebook_size, collision_policy)
    fitted = fit_tokenizer(tokenizer, x, levels=levels, codebook_size=codebook_size, seed=seed, device=device,
                           **tokenizer_cfg)
    before = collision_stats(fitted.codes)
    log.info("before collision policy: %d unique tuples for %d items (collision rate %.4f)",
             before["n_unique"], before["n_items"], before["collision_rate"])
    codes, facts = resolve(collision_policy, fitted.codes, fitted.last_distances, codebook_size=codebook_size,
                           sinkhorn_epsilon=collision_epsilon, max_rounds=collision_rounds)
    after = collision_stats(codes)
    log.info("after %s: collision rate %.4f %s", collision_policy, after["collision_rate"], facts)
    if collision_policy != "none" and after["collision_rate"] > 0:
        raise ValueError(f"{after['items_in_collisions']} items still collide after {collision_policy}")
    decoded = fitted.decode(codes[:, :levels])  # the suffix level carries no vector
    ckpt = {name: {k: v for k, v in c.items() if k != "state"} for name, c in fitted.checkpoints.items()}
    stats = {
        "tokenizer": tokenizer,
        "n_items": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "levels": int(codes.shape[1]),
        "tokenizer_levels": levels,
        "codebook_size": codebook_size,
        "collision_policy": collision_policy,
        "policy_facts": facts,
        "standardize": standardize,
        "collisions_before": before,
        "collisions_after": after,
        "changed_items": int((codes[:, :levels] != fitted.codes).any(1).sum()),
        "per_level_before": level_usage(fitted.codes, codebook_size),
        "per_level": level_usage(codes, codebook_size),
        "reconstruction_mse": float(((decoded - x) ** 2).mean()),  # decoded from the written codes
        "final_loss": fitted.history[-1].get("loss") if fitted.history else None,
        "best_loss": min((row["loss"] for row in fitted.history if "loss" in row), default=None),
        "checkpoints": ckpt,
        "history": _subsample(fitted.history),
        "tokenizer_facts": fitted.facts,
        "seconds": round(time.time() - t0, 2),
        "seed": seed,
        "device": device,
        "config": {k: v for k, v in tokenizer_cfg.items()},
    }
    return codes, stats, fitted


def save_checkpoints(fitted, checkpoint_dir: str | Path) -> None:
    """``best_loss.pt`` / ``best_collision.pt`` (RQ-VAE state dicts) and ``checkpoints.json`` (what each is)."""
    with atomic_dir(checkpoint_dir) as tmp:
        summary = {}
        for name, c in fitted.checkpoints.items():
            if c.get("state") is not None:
                torch.save(c["state"], tmp / f"{name}.pt")
            summary[name] = {k: v for k, v in c.items() if k != "state"}
        write_json(tmp / "checkpoints.json", summary)


def quantize_file(npy_path: str | Path, index_path: str | Path, stats_path: str | Path, *,
                  plot_path: str | Path | None = None, checkpoint_dir: str | Path | None = None,
                  reconstruction_path: str | Path | None = None, view: str = "mm", **cfg) -> dict:
    """Tokenize the embeddings in ``npy_path`` (:func:`quantize_matrix`, ``cfg`` = the ``quantize`` section);
    write the item index, the stats and, when given, the training-curve PNG, the checkpoints and every item's
    vector decoded from its codes (:func:`reconstruction`, ``[n, dim]`` float32); return the stats.
    ``view`` (which embedding the file holds) is only recorded in the stats."""
    check_choices(**cfg)
    x = load_embeddings(npy_path)
    try:
        codes, stats, fitted = quantize_matrix(x, **cfg)
    except ValueError as e:
        raise ValueError(f"{npy_path}: {e}") from None
    stats["input"], stats["view"] = str(npy_path), view
    write_json(index_path, codes_to_index(codes), indent=None)
    write_json(stats_path, stats)
    if plot_path:
        plot_stats(stats, plot_path)
    if checkpoint_dir:
        save_checkpoints(fitted, checkpoint_dir)
    if reconstruction_path:
        save_npy(reconstruction_path, reconstruction(fitted, codes, x, levels=cfg["levels"],
                                                     standardize=cfg.get("standardize", False)))
    log.info("wrote %s and %s in %.1f s", index_path, stats_path, stats["seconds"])
    return stats


def quantize_mql4rec(text_npy: str | Path, image_npy: str | Path, index_path: str | Path, stats_path: str | Path,
                     **cfg) -> dict:
    """MQL4Rec's multimodal IDs: one tokenizer on the text vectors, one on the image vectors (same ``cfg``), each
    made collision-free on its own by the policy; one index with the text tokens (``<a_N>``..) then the image
    tokens (``<A_N>``..) per item. Stats: ``{"text": .., "image": .., "joint_collisions": ..}``."""
    check_choices(**cfg)
    xt, xi = load_embeddings(text_npy), load_embeddings(image_npy)
    if len(xt) != len(xi):
        raise InputError(f"{image_npy}: {len(xi)} rows, but {text_npy} has {len(xt)} (one row per item in both)")
    parts, stats = [], {}
    for name, x, path in (("text", xt, text_npy), ("image", xi, image_npy)):
        try:
            codes, stats[name], _ = quantize_matrix(x, **cfg)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        stats[name]["input"] = str(path)
        parts.append(codes)
    text_idx, image_idx = codes_to_index(parts[0]), codes_to_index(parts[1], UPPER)
    index = {item: text_idx[item] + image_idx[item] for item in text_idx}
    stats["layout"] = "text tokens <a_N>.. then image tokens <A_N>.. per item"
    stats["joint_collisions"] = collision_stats(np.concatenate(parts, axis=1))
    write_json(index_path, index, indent=None)
    write_json(stats_path, stats)
    return stats
