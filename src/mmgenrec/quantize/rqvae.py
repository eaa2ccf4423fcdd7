"""RQ-VAE for semantic item IDs, after LC-Rec (Zheng et al., 2024).

An MLP encoder maps an item embedding to a small latent z; ``levels`` residual codebooks quantise z coarse to fine
(level l quantises what levels < l left over); an MLP decoder reconstructs the embedding from the summed codes.
Codebooks start from k-means (faiss) on the residuals of the whole data set, level by level. At encode time the
last level can use a Sinkhorn-balanced assignment, which spreads items over its codes and so avoids most collisions.
"""

from __future__ import annotations

import copy
import logging
import math

import faiss
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmgenrec.quantize.collisions import collision_stats

log = logging.getLogger(__name__)

CHUNK = 8192  # rows per forward pass when a function walks the whole data set


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
    def __init__(self, in_dim: int, *, levels: int, codebook_size: int, hidden: list[int], latent_dim: int,
                 beta: float = 0.25, batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be true or false, got {batch_norm!r}")
        if levels < 1 or codebook_size < 2:
            raise ValueError(f"need levels >= 1 and codebook_size >= 2, got {levels} and {codebook_size}")
        self.levels, self.codebook_size, self.beta = levels, codebook_size, beta
        self.encoder = mlp([in_dim, *hidden, latent_dim], batch_norm, dropout)
        self.decoder = mlp([latent_dim, *reversed(hidden), in_dim], batch_norm, dropout)
        self.codebooks = nn.ModuleList(nn.Embedding(codebook_size, latent_dim) for _ in range(levels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        z = self.encoder(x)
        r, q_sum, quant, codes = z, torch.zeros_like(z), z.new_zeros(()), []
        for book in self.codebooks:
            idx = squared_distances(r, book.weight).argmin(1)
            q = book(idx)
            # codebook vectors move towards the residual; the encoder commits to the codes (weight beta)
            quant = quant + F.mse_loss(q, r.detach()) + self.beta * F.mse_loss(q.detach(), r)
            q_sum = q_sum + q
            r = r - q.detach()
            codes.append(idx)
        quant = quant / self.levels  # mean over levels, as in LC-Rec
        z_q = z + (q_sum - z).detach()  # straight-through: the decoder's gradient flows on into the encoder
        x_hat = self.decoder(z_q)
        recon = F.mse_loss(x_hat, x)
        return x_hat, {"loss": recon + quant, "recon": recon, "quant": quant}, torch.stack(codes, 1)

    @torch.no_grad()
    def codes_and_last_distances(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest-code ``[n, levels]`` codes and the ``[n, K]`` squared distances of the last-level residual."""
        r = self.encoder(x)
        codes = []
        for book in self.codebooks:
            d = squared_distances(r, book.weight)
            idx = d.argmin(1)
            r = r - book(idx)
            codes.append(idx)
        return torch.stack(codes, 1), d

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
# balanced assignment


def sinkhorn(cost, epsilon: float, iters: int) -> torch.Tensor:
    """Entropic optimal-transport plan ``Q`` ``[n, K]`` for ``cost``, in float64 and log space.

    Rows carry mass 1/n each (items) and columns 1/K each (codes): ``Q.sum(1) ~ 1/n``, ``Q.sum(0) ~ 1/K``
    (columns exact, rows up to convergence, as the last scaling step is over columns).
    """
    log_q = -torch.as_tensor(cost, dtype=torch.float64) / epsilon
    n, k = log_q.shape
    log_q = log_q - torch.logsumexp(log_q.reshape(-1), 0)
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True) - math.log(n)
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - math.log(k)
    return log_q.exp()


def sinkhorn_assign(distances, epsilon: float = 0.003, iters: int = 50) -> torch.Tensor:
    """Balanced codes ``[n]``: distances are centred and scaled to [-1, 1] (as LC-Rec), then argmax of the plan."""
    d = torch.as_tensor(distances, dtype=torch.float64)
    middle = (d.max() + d.min()) / 2
    amplitude = d.max() - middle + 1e-5
    return sinkhorn((d - middle) / amplitude, epsilon, iters).argmax(1)


# ----------------------------------------------------------------------------------------------------------------
# encoding


@torch.no_grad()
def encode_with_distances(model: RQVAE, x, sinkhorn_last_level: bool = True, epsilon: float = 0.003,
                          sinkhorn_iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[n, levels]`` (int64) and last-level squared distances ``[n, K]`` for every row of ``x``."""
    model.eval()
    device = next(model.parameters()).device
    x = x.float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    codes, dists = [], []
    for i in range(0, len(x), CHUNK):
        c, d = model.codes_and_last_distances(x[i:i + CHUNK].to(device))
        codes.append(c.cpu())
        dists.append(d.cpu())
    codes, dists = torch.cat(codes), torch.cat(dists)
    if sinkhorn_last_level:
        codes[:, -1] = sinkhorn_assign(dists, epsilon, sinkhorn_iters)
    return codes.numpy().astype(np.int64), dists.numpy()


def encode(model: RQVAE, x, sinkhorn_last_level: bool = True, epsilon: float = 0.003) -> np.ndarray:
    """Codes ``[n, levels]`` (int64); the last level Sinkhorn-balanced over all rows when asked."""
    return encode_with_distances(model, x, sinkhorn_last_level, epsilon)[0]


@torch.no_grad()
def reconstruction_mse(model: RQVAE, x: np.ndarray, codes: np.ndarray) -> float:
    """Mean squared error between ``x`` and the decoder's output from the given ``codes`` (not re-encoded)."""
    model.eval()
    device = next(model.parameters()).device
    sq_err = 0.0
    for i in range(0, len(x), CHUNK):
        x_hat = model.decode_codes(torch.as_tensor(codes[i:i + CHUNK]).to(device)).cpu()
        sq_err += float((x_hat - torch.as_tensor(x[i:i + CHUNK])).pow(2).sum())
    return sq_err / x.size


# ----------------------------------------------------------------------------------------------------------------
# training


def train_rqvae(x: np.ndarray, *, levels: int, codebook_size: int, hidden: list[int], latent_dim: int, epochs: int,
                batch_size: int, lr: float, weight_decay: float = 0.0, beta: float = 0.25, batch_norm: bool = False,
                seed: int = 0, device: str = "cpu", kmeans_iters: int = 100) -> tuple[RQVAE, list[dict]]:
    """Train an RQ-VAE on the rows of ``x``; return the model at its lowest epoch loss (eval mode) and the history.

    History has one dict per epoch: epoch (1-based), loss, recon, quant (means over the epoch's batches) and
    collision_rate of nearest-code tuples over all rows (every max(1, epochs // 10) epochs and at the end, else None).
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32)).to(device)
    n = len(x_t)
    model = RQVAE(x_t.shape[1], levels=levels, codebook_size=codebook_size, hidden=list(hidden),
                  latent_dim=latent_dim, beta=beta, batch_norm=batch_norm).to(device)
    log.info("RQ-VAE: %d items x %d dims, %d levels x %d codes, hidden %s, latent %d, %d parameters",
             n, x_t.shape[1], levels, codebook_size, list(hidden), latent_dim,
             sum(p.numel() for p in model.parameters()))

    model.train()
    kmeans_init(model, x_t, seed=seed, niter=kmeans_iters)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    eval_every = max(1, epochs // 10)
    history: list[dict] = []
    best_loss, best_state, best_epoch = math.inf, None, 0
    bar = tqdm(range(1, epochs + 1), desc="rqvae", mininterval=10)
    for epoch in bar:
        model.train()
        batches = torch.randperm(n, generator=gen).split(batch_size)
        if batch_norm and len(batches) > 1 and len(batches[-1]) == 1:
            batches = batches[:-1]  # BatchNorm cannot train on a single row
        sums = {"loss": 0.0, "recon": 0.0, "quant": 0.0}
        seen = 0
        for idx in batches:
            _, losses, _ = model(x_t[idx.to(device)])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            for key in sums:
                sums[key] += losses[key].item() * len(idx)
            seen += len(idx)
        row = {"epoch": epoch, **{key: value / seen for key, value in sums.items()}, "collision_rate": None}

        if row["loss"] < best_loss:
            best_loss, best_epoch = row["loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        if epoch % eval_every == 0 or epoch == epochs:
            codes = encode(model, x_t, sinkhorn_last_level=False)
            row["collision_rate"] = collision_stats(codes)["collision_rate"]
            log.info("epoch %d: loss %.5f recon %.5f quant %.5f collision_rate %.4f",
                     epoch, row["loss"], row["recon"], row["quant"], row["collision_rate"])
        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        history.append(row)

    if best_state is not None:
        model.load_state_dict(best_state)
    log.info("best epoch %d (loss %.5f)", best_epoch, best_loss)
    model.eval()
    return model, history
