"""RQ-VAE for semantic item IDs, after LC-Rec (Zheng et al., 2024).

An MLP encoder maps an item embedding to a small latent z; ``levels`` residual codebooks quantise z coarse to fine
(level l quantises what levels < l left over); an MLP decoder reconstructs the embedding from the summed codes.
Codebooks start from k-means (faiss) on the residuals of the whole data set, level by level. Loss = reconstruction
MSE + codebook + beta * commitment, straight-through gradients, AdamW with warm-up. Levels with a Sinkhorn epsilon
> 0 pick codes by a balanced (optimal-transport) assignment in training and, when asked, at encode time, which
spreads items over the codes and so avoids most collisions.
"""

from __future__ import annotations

import copy
import logging
import math
import time

import faiss
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmgenrec.quantize.collisions import collision_stats
from mmgenrec.quantize.sinkhorn import sinkhorn, sinkhorn_assign  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

CHUNK = 8192  # rows per forward pass when a function walks the whole data set
SELECT = ("best_loss", "best_collision", "last")
# our name -> transformers.get_scheduler name (every one warms up linearly first)
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


# ----------------------------------------------------------------------------------------------------------------
# model


def mlp(sizes: list[int], batch_norm: bool, dropout: float) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``; BatchNorm/ReLU/Dropout after every layer but the last."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def squared_distances(r: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``[n, K]`` squared L2 distances between rows of ``r`` and codebook vectors."""
    return (r.pow(2).sum(1, keepdim=True) - 2 * r @ codebook.T + codebook.pow(2).sum(1)).clamp_min(0)


class RQVAE(nn.Module):
    """MLP encoder -> ``levels`` residual codebooks -> mirrored MLP decoder (LC-Rec's RQ-VAE).

    ``sinkhorn_epsilon`` has one entry per level: a level with epsilon > 0 picks its codes in training by a
    Sinkhorn-balanced assignment over the batch (LC-Rec's ``sk_epsilons``); 0 means the nearest code.

    ``detach_residual`` (default, LC-Rec's behaviour): the residual handed to level ``l + 1`` carries no gradient
    (LC-Rec subtracts the straight-through output ``r + (q - r).detach()``, whose gradient w.r.t. ``r`` cancels),
    so only the first level's commitment loss pulls the encoder. ``False``: the residual ``r - q.detach()`` keeps
    its gradient and every level's commitment loss pulls the encoder.
    """

    def __init__(self, in_dim: int, *, levels: int, codebook_size: int, hidden: list[int], latent_dim: int,
                 beta: float = 0.25, batch_norm: bool = False, dropout: float = 0.0,
                 sinkhorn_epsilon: list[float] | None = None, sinkhorn_iters: int = 50,
                 detach_residual: bool = True):
        super().__init__()
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be true or false, got {batch_norm!r}")
        if levels < 1 or codebook_size < 2:
            raise ValueError(f"need levels >= 1 and codebook_size >= 2, got {levels} and {codebook_size}")
        eps = [0.0] * levels if sinkhorn_epsilon is None else [float(e) for e in sinkhorn_epsilon]
        if len(eps) != levels or any(e < 0 for e in eps):
            raise ValueError(f"sinkhorn_epsilon needs {levels} non-negative values (one per level), got {eps}")
        self.levels, self.codebook_size, self.beta = levels, codebook_size, beta
        self.sinkhorn_epsilon, self.sinkhorn_iters = eps, sinkhorn_iters
        self.detach_residual = bool(detach_residual)
        self.encoder = mlp([in_dim, *hidden, latent_dim], batch_norm, dropout)
        self.decoder = mlp([latent_dim, *reversed(hidden), in_dim], batch_norm, dropout)
        self.codebooks = nn.ModuleList(nn.Embedding(codebook_size, latent_dim) for _ in range(levels))

    def assign(self, level: int, distances: torch.Tensor, balanced: bool) -> torch.Tensor:
        """Codes for one level: Sinkhorn-balanced when asked and the level's epsilon is > 0, else nearest."""
        eps = self.sinkhorn_epsilon[level]
        if balanced and eps > 0:
            return sinkhorn_assign(distances.detach(), eps, self.sinkhorn_iters).to(distances.device)
        return distances.argmin(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        z = self.encoder(x)
        r, q_sum, quant, codes = z, torch.zeros_like(z), z.new_zeros(()), []
        for level, book in enumerate(self.codebooks):
            idx = self.assign(level, squared_distances(r, book.weight), balanced=self.training)
            q = book(idx)
            # codebook vectors move towards the residual; the encoder commits to the codes (weight beta)
            quant = quant + F.mse_loss(q, r.detach()) + self.beta * F.mse_loss(q.detach(), r)
            q_sum = q_sum + q
            r = (r - q).detach() if self.detach_residual else r - q.detach()
            codes.append(idx)
        quant = quant / self.levels  # mean over levels, as in LC-Rec
        z_q = z + (q_sum - z).detach()  # straight-through: the decoder's gradient flows on into the encoder
        x_hat = self.decoder(z_q)
        recon = F.mse_loss(x_hat, x)
        return x_hat, {"loss": recon + quant, "recon": recon, "quant": quant}, torch.stack(codes, 1)

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        z_q = sum(book(codes[:, l]) for l, book in enumerate(self.codebooks))
        return self.decoder(z_q)


# ----------------------------------------------------------------------------------------------------------------
# k-means initialisation


def kmeans(points: np.ndarray, k: int, *, niter: int, seed: int) -> np.ndarray:
    """``[k, d]`` faiss k-means centroids; with fewer points than k, points sampled with replacement plus noise."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    n, d = points.shape
    if n < k:
        log.warning("k-means: only %d points for %d codes; initialising the codebook from points sampled with "
                    "replacement plus small noise instead", n, k)
        rng = np.random.default_rng(seed)
        scale = 0.01 * (float(points.std()) or 1.0)
        return (points[rng.integers(0, n, size=k)] + rng.normal(0, scale, size=(k, d))).astype(np.float32)
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, verbose=False)
    km.train(points)
    return km.centroids.copy()


@torch.no_grad()
def kmeans_init(model: RQVAE, x: torch.Tensor, *, seed: int, niter: int = 100) -> None:
    """LC-Rec style: level l's codebook is k-means on the residuals left after the (initialised) levels < l."""
    chunks = torch.tensor_split(x, max(1, math.ceil(len(x) / CHUNK)))  # even chunks: no 1-row BatchNorm batch
    r = torch.cat([model.encoder(chunk) for chunk in chunks])
    for level, book in enumerate(model.codebooks):
        centroids = kmeans(r.cpu().numpy(), model.codebook_size, niter=niter, seed=seed + level)
        book.weight.copy_(torch.from_numpy(centroids).to(book.weight))
        r = r - book(squared_distances(r, book.weight).argmin(1))


# ----------------------------------------------------------------------------------------------------------------
# encoding


@torch.no_grad()
def encode_with_distances(model: RQVAE, x, balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[n, levels]`` (int64) and last-level squared distances ``[n, K]`` for every row of ``x``.

    Level by level over all rows: when ``balanced``, every level whose epsilon is > 0 is assigned by a Sinkhorn
    plan over the whole data set (balanced code usage), the others by nearest code.
    """
    model.eval()
    device = next(model.parameters()).device
    x = x.float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    r = torch.cat([model.encoder(x[i:i + CHUNK].to(device)) for i in range(0, len(x), CHUNK)])
    codes = []
    for level, book in enumerate(model.codebooks):
        d = squared_distances(r, book.weight)
        idx = model.assign(level, d, balanced=balanced)
        r = r - book(idx)
        codes.append(idx)
    return torch.stack(codes, 1).cpu().numpy().astype(np.int64), d.cpu().numpy()


def encode(model: RQVAE, x, balanced: bool = False) -> np.ndarray:
    """Codes ``[n, levels]`` (int64); see :func:`encode_with_distances`."""
    return encode_with_distances(model, x, balanced)[0]


@torch.no_grad()
def decode(model: RQVAE, codes: np.ndarray) -> np.ndarray:
    """The decoder's ``[n, dim]`` output for the given ``codes`` ``[n, levels]`` (not re-encoded)."""
    model.eval()
    device = next(model.parameters()).device
    out = [model.decode_codes(torch.as_tensor(codes[i:i + CHUNK]).to(device)).cpu()
           for i in range(0, len(codes), CHUNK)]
    return torch.cat(out).numpy()


@torch.no_grad()
def reconstruction_mse(model: RQVAE, x, codes: np.ndarray) -> float:
    """Mean squared error between ``x`` (array or tensor) and the decoder's output from the given ``codes`` (not
    re-encoded), chunk by chunk on the model's device; leaves the model in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    total = 0.0
    for i in range(0, len(x), CHUNK):
        c = torch.as_tensor(codes[i:i + CHUNK]).to(device)
        total += float(((model.decode_codes(c) - x[i:i + CHUNK].to(device).float()) ** 2).sum())
    return total / x.numel()


# ----------------------------------------------------------------------------------------------------------------
# training


def train_rqvae(x: np.ndarray, *, levels: int, codebook_size: int, hidden: list[int], latent_dim: int, epochs: int,
                batch_size: int, lr: float, weight_decay: float = 0.0, beta: float = 0.25, batch_norm: bool = False,
                dropout: float = 0.0, sinkhorn_epsilon: list[float] | None = None, sinkhorn_iters: int = 50,
                warmup_epochs: int = 0, lr_scheduler: str = "constant", eval_every: int = 0,
                select: str = "best_loss", seed: int = 0, device: str = "cpu",
                kmeans_iters: int = 100, detach_residual: bool = True,
                grad_clip: float = 1.0) -> tuple[RQVAE, list[dict], dict]:
    """Train an RQ-VAE on the rows of ``x`` (LC-Rec's recipe); return ``(model, history, checkpoints)``.

    ``detach_residual``: see :class:`RQVAE` (LC-Rec's default: True). ``grad_clip``: the gradients' global L2
    norm is clipped to this before every step (LC-Rec's trainer: 1.0); 0 = no clipping. AdamW with a linear warm-up over ``warmup_epochs`` epochs, then a ``constant``, ``linear``ly or ``cosine``
    decaying rate (``transformers.get_scheduler``). Two checkpoints are kept: the state with the lowest epoch loss and the state
    with the lowest collision rate of nearest-code tuples over all rows (checked every ``eval_every`` epochs, 0 =
    every max(1, epochs // 10), and at the last epoch; ties keep the earlier, lower-loss one). ``select``
    (``best_loss`` | ``best_collision`` | ``last``) says which the returned model (eval mode) holds;
    ``checkpoints`` maps ``best_loss`` / ``best_collision`` to ``{"epoch", "loss", "collision_rate", "state"}``.

    History has one dict per epoch: epoch (1-based), lr, loss, recon, quant (means over the epoch's batches),
    seconds (the epoch's training pass), and on check epochs (None on the others) collision_rate and index_recon:
    the reconstruction MSE over all rows, in eval mode, from the nearest-code index (what the ids stand for). Same seed and data, same device: identical results.
    """
    from transformers import get_scheduler

    if grad_clip < 0:
        raise ValueError(f"grad_clip must be >= 0 (0 = no clipping), got {grad_clip}")
    if select not in SELECT:
        raise ValueError(f"select must be one of {SELECT}, got {select!r}")
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32)).to(device)
    n = len(x_t)
    model = RQVAE(x_t.shape[1], levels=levels, codebook_size=codebook_size, hidden=list(hidden),
                  latent_dim=latent_dim, beta=beta, batch_norm=batch_norm, dropout=dropout,
                  sinkhorn_epsilon=sinkhorn_epsilon, sinkhorn_iters=sinkhorn_iters,
                  detach_residual=detach_residual).to(device)
    log.info("RQ-VAE: %d items x %d dims, %d levels x %d codes, hidden %s, latent %d, %d parameters, "
             "batch_norm %s, sinkhorn epsilon %s", n, x_t.shape[1], levels, codebook_size, list(hidden), latent_dim,
             sum(p.numel() for p in model.parameters()), batch_norm, model.sinkhorn_epsilon)

    model.train()  # k-means on the encoder's output as training sees it (BatchNorm batch statistics)
    kmeans_init(model, x_t, seed=seed, niter=kmeans_iters)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    if batch_norm and n % batch_size == 1 and n > 1:
        steps_per_epoch -= 1
    if lr_scheduler not in SCHEDULES:
        raise ValueError(f"lr_scheduler must be one of {tuple(SCHEDULES)}, got {lr_scheduler!r}")
    scheduler = get_scheduler(SCHEDULES[lr_scheduler], optimizer, num_warmup_steps=warmup_epochs * steps_per_epoch,
                              num_training_steps=max(1, epochs * steps_per_epoch))

    eval_every = eval_every or max(1, epochs // 10)
    history: list[dict] = []
    best = {"best_loss": {"loss": math.inf, "collision_rate": math.inf, "epoch": 0, "state": None},
            "best_collision": {"loss": math.inf, "collision_rate": math.inf, "epoch": 0, "state": None}}
    bar = tqdm(range(1, epochs + 1), desc="rqvae", mininterval=10)
    for epoch in bar:
        model.train()
        batches = torch.randperm(n, generator=gen).split(batch_size)
        if batch_norm and len(batches) > 1 and len(batches[-1]) == 1:
            batches = batches[:-1]  # BatchNorm cannot train on a single row
        sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0}
        seen = 0
        lr_now = scheduler.get_last_lr()[0]
        t_epoch = time.perf_counter()
        for idx in batches:
            _, losses, _ = model(x_t[idx.to(device)])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            for key in sums:
                sums[key] += losses[key].item() * len(idx)
            seen += len(idx)
        row = {"epoch": epoch, "lr": lr_now, **{key: value / seen for key, value in sums.items()},
               "seconds": round(time.perf_counter() - t_epoch, 4), "collision_rate": None, "index_recon": None}

        if epoch % eval_every == 0 or epoch == epochs:
            codes = encode(model, x_t)
            row["collision_rate"] = collision_stats(codes)["collision_rate"]
            row["index_recon"] = reconstruction_mse(model, x_t, codes)
            log.info("epoch %d: loss %.5f recon %.5f quant %.5f collision_rate %.4f index_recon %.5f", epoch,
                     row["loss"], row["recon"], row["quant"], row["collision_rate"], row["index_recon"])
        if row["loss"] < best["best_loss"]["loss"]:
            best["best_loss"] = {"loss": row["loss"], "collision_rate": row["collision_rate"], "epoch": epoch,
                                 "state": copy.deepcopy(model.state_dict())}
        if row["collision_rate"] is not None and row["collision_rate"] < best["best_collision"]["collision_rate"]:
            best["best_collision"] = {"loss": row["loss"], "collision_rate": row["collision_rate"], "epoch": epoch,
                                      "state": copy.deepcopy(model.state_dict())}
        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        history.append(row)

    if select != "last" and best[select]["state"] is not None:
        model.load_state_dict(best[select]["state"])
    log.info("selected %s: epoch %s; best loss %.5f at epoch %d, best collision rate %.4f at epoch %d",
             select, best[select]["epoch"] if select != "last" else epochs, best["best_loss"]["loss"],
             best["best_loss"]["epoch"], best["best_collision"]["collision_rate"], best["best_collision"]["epoch"])
    model.eval()
    return model, history, best
