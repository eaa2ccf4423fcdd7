"""Balanced assignment of items to codes: entropic optimal transport (Sinkhorn-Knopp), as in LC-Rec."""

from __future__ import annotations

import math

import torch


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
