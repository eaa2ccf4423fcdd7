"""Training and full ranking of one sequential net: early stopping on the valid split, resumable, seeded.

Determinism: the net is built under ``torch.manual_seed(seed)``; epoch ``e`` draws its batch order, masks and
negatives from ``numpy.random.default_rng([seed, e])`` and its dropout from ``torch.manual_seed`` of the same pair,
so an epoch's result depends only on the state at its start. The checkpoint (``state.pt``) is written after every
epoch; a killed job restarts the interrupted epoch from it and ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmgenrec.evaluate.metrics import per_user_metrics
from mmgenrec.methods import seqdata
from mmgenrec.methods.seqnets import SeqNet, build_net

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    model: str
    loss: str = "ce"
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    mask_prob: float = 0.2
    last_mask_prob: float = 0.0
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    eval_every: int = 1
    select_metric: str = "NDCG@10"
    eval_batch_size: int = 512
    max_minutes: float | None = None  # wall-clock cap of training (benchmarks); None = none
    seed: int = 0

    def __post_init__(self):
        if self.model == "bert4rec" and self.loss != "ce":
            raise ValueError("bert4rec trains with the cloze cross-entropy only (loss: ce)")
        if self.loss not in ("ce", "bce", "bpr"):
            raise ValueError(f"loss must be ce, bce or bpr, got {self.loss!r}")


@dataclass
class FitResult:
    net: SeqNet
    curve: list[dict] = field(default_factory=list)  # one entry per evaluation: epoch, loss, valid metrics
    best_epoch: int = 0
    best: dict = field(default_factory=dict)
    epochs_run: int = 0
    seconds: float = 0.0


def device_of(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def fingerprint(cfg: TrainConfig, train: Mapping[str, Sequence[int]], n_items: int) -> str:
    """What a checkpoint must match to be resumed: the settings and the exact training data."""
    h = hashlib.sha256(json.dumps([asdict(cfg), n_items, list(train.items())]).encode())
    return h.hexdigest()[:16]


def loss_of(net: SeqNet, cfg: TrainConfig, inputs: torch.Tensor, labels: torch.Tensor,
            rng: np.random.Generator) -> torch.Tensor:
    """Full softmax cross-entropy over every item at each labelled position (``ce``), or one uniform negative per
    position (``bce``: SASRec's original binary loss; ``bpr``: pairwise)."""
    h = net(inputs)
    at = labels > 0
    h, pos = h[at], labels[at]
    if cfg.loss == "ce":
        return F.cross_entropy(net.scores(h), pos - 1)
    neg = torch.as_tensor(rng.integers(1, net.n_items + 1, size=pos.numel()), device=pos.device)
    neg = torch.where(neg == pos, neg % net.n_items + 1, neg)  # never the positive itself
    sp, sn = net.item_scores(h, pos), net.item_scores(h, neg)
    if cfg.loss == "bpr":
        return -F.logsigmoid(sp - sn).mean()
    return -(F.logsigmoid(sp) + F.logsigmoid(-sn)).mean()


@torch.no_grad()
def score_histories(net: SeqNet, histories: Sequence[Sequence[int]], batch_size: int, *, exclude: bool,
                    k: int, desc: str = "rank") -> tuple[list[list[int]], list[list[float]]]:
    """Top-``k`` item ids (0-based) for each history under full ranking over every item; with ``exclude`` the
    history's own items are set to -inf (and never returned)."""
    net.eval()
    dev = net.item_emb.weight.device
    mask_token = net.mask_token if getattr(net, "causal", True) is False else None
    k = min(k, net.n_items)
    items, values = [], []
    for start in tqdm(range(0, len(histories), batch_size), desc=desc, leave=False, mininterval=10):
        chunk = histories[start:start + batch_size]
        tokens = seqdata.inference_inputs(chunk, net.max_len, mask_token).to(dev)
        scores = net.scores(net(tokens)[:, -1])
        if exclude:
            rows = [b for b, h in enumerate(chunk) for _ in h]
            cols = [int(i) for h in chunk for i in h]
            scores[rows, cols] = float("-inf")
        top = torch.topk(scores, k, dim=1)
        for ids, vals in zip(top.indices.tolist(), top.values.tolist()):
            keep = [j for j, v in enumerate(vals) if v != float("-inf")]
            items.append([ids[j] for j in keep])
            values.append([vals[j] for j in keep])
    return items, values


def valid_metrics(net: SeqNet, histories, targets, batch_size: int, exclude: bool) -> dict[str, float]:
    top, _ = score_histories(net, histories, batch_size, exclude=exclude, k=10, desc="valid")
    pu = per_user_metrics(top, targets, ks=(1, 5, 10), ndcg_ks=(5, 10))
    return {m: float(v.mean()) for m, v in pu.items()}


def length_batches(samples: Sequence[seqdata.Sample], batch_size: int, rng: np.random.Generator,
                   pool: int = 32) -> list[np.ndarray]:
    """A random epoch order in batches of similar-length samples: the shuffled samples are cut into pools of
    ``pool`` batches, each pool sorted by length (stable) and cut into batches, and the batches shuffled. Short
    batches are padded to their own longest row only (most Amazon histories are far shorter than max_len)."""
    order = rng.permutation(len(samples))
    lengths = np.array([len(s.items) for s in samples])
    batches = []
    for start in range(0, len(order), pool * batch_size):
        chunk = order[start:start + pool * batch_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(cfg: TrainConfig, train: Mapping[str, Sequence[int]], n_items: int, valid_histories, valid_targets, *,
        checkpoint_dir: str | Path | None, exclude_history: bool = False, device: str = "auto",
        on_batch: Callable[[list[int], torch.Tensor, torch.Tensor], None] | None = None) -> FitResult:
    """Train on ``train`` (the training parts), evaluate full ranking on the valid split every ``eval_every``
    epochs, stop after ``patience`` evaluations without a better ``select_metric``; the best state is returned.

    ``on_batch(users, inputs, labels)`` sees every training batch (users: indices into ``train``; tests use it).
    """
    dev = device_of(device)
    torch.manual_seed(cfg.seed)
    net = build_net(cfg.model, n_items, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout,
                    max_len=cfg.max_len).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    cloze = cfg.model == "bert4rec"
    samples = (seqdata.cloze_samples if cloze else seqdata.causal_samples)(train, cfg.max_len)
    if not samples:
        raise ValueError("no training samples: every training part has fewer than 2 items")
    key = fingerprint(cfg, train, n_items)
    ckpt = Path(checkpoint_dir) / "state.pt" if checkpoint_dir else None
    state = {"epoch": 0, "curve": [], "best": None, "best_epoch": 0, "best_state": None, "bad": 0, "done": False,
             "seconds": 0.0}
    if ckpt and ckpt.exists():
        saved = torch.load(ckpt, map_location=dev, weights_only=False)
        if saved.get("key") == key:
            net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["opt"])
            state = saved["state"]
            log.info("resuming %s from %s after epoch %d", cfg.model, ckpt, state["epoch"])
        else:
            log.warning("%s: checkpoint of other settings or data; training from scratch", ckpt)
    select = cfg.select_metric
    bar = tqdm(total=cfg.epochs, initial=state["epoch"], desc=f"{cfg.model} epochs")
    while not state["done"] and state["epoch"] < cfg.epochs:
        t0 = time.monotonic()
        epoch = state["epoch"] + 1
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        batches = length_batches(samples, cfg.batch_size, rng)
        net.train()
        total, n = 0.0, 0
        for idx in tqdm(batches, desc=f"epoch {epoch}", leave=False, mininterval=10):
            batch = [samples[i] for i in idx]
            if cloze:
                inputs, labels = seqdata.cloze_batch(batch, cfg.mask_prob, net.mask_token, rng, cfg.last_mask_prob)
            else:
                inputs, labels = seqdata.causal_batch(batch)
            if on_batch is not None:
                on_batch([s.user for s in batch], inputs, labels)
            loss = loss_of(net, cfg, inputs.to(dev), labels.to(dev), rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        state["epoch"] = epoch
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            metrics = valid_metrics(net, valid_histories, valid_targets, cfg.eval_batch_size, exclude_history)
            state["curve"].append({"epoch": epoch, "loss": total / n, **{f"valid_{m}": v for m, v in metrics.items()}})
            if state["best"] is None or metrics[select] > state["best"][select]:
                state.update(best=metrics, best_epoch=epoch, bad=0,
                             best_state=copy.deepcopy({k: v.cpu() for k, v in net.state_dict().items()}))
            else:
                state["bad"] += 1
            state["done"] = state["bad"] >= cfg.patience
            log.info("%s epoch %d loss %.4f valid %s %.4f (best %.4f at %d)", cfg.model, epoch, total / n, select,
                     metrics[select], state["best"][select], state["best_epoch"])
        state["seconds"] += time.monotonic() - t0
        if cfg.max_minutes is not None and state["seconds"] >= 60 * cfg.max_minutes and state["best"] is not None:
            log.info("%s: stopping after %.1f min (max_minutes)", cfg.model, state["seconds"] / 60)
            state["done"] = True
        bar.update(1)
        if ckpt:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _save(ckpt, {"key": key, "net": net.state_dict(), "opt": opt.state_dict(), "state": state})
    bar.close()
    if state["best_state"] is not None:
        net.load_state_dict(state["best_state"])
    net.eval()
    return FitResult(net, state["curve"], state["best_epoch"], state["best"] or {}, state["epoch"], state["seconds"])
