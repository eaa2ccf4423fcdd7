"""Kind ``sequential``: SASRec, BERT4Rec, GRU4Rec, LRURec over item ids, full ranking over every item.

One call (:func:`run_sequential`) trains the configured model on the training parts, for every point of the
config's ``grid`` (early stopping on the valid split; the grid point with the best valid ``select_metric`` wins,
never a test figure), ranks the evaluated split through :class:`~mmgenrec.methods.base.Evaluation`, and writes

* ``seqrec_metrics.json`` / ``seqrec_topk.jsonl`` (the metric code every method shares),
* ``train_log.json``: every grid point's valid curve, best epoch, valid metrics, seconds; the selected setting,
* the candidate lists a ranker consumes, ``<candidates>/{valid,test,train}.jsonl`` + ``recall.json``: top-K per
  user, the user's own history items always excluded. Valid candidates rank the training part (the model never
  saw the valid target), test candidates the training part plus the valid item, with the same model. ``train``
  lists rank training prefixes (``train_candidates``: ``all`` prefixes, the ``last`` one per user, or ``none``);
  the model was trained on those targets, as LlamaRec's ranker training data is.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path

from mmgenrec.io import atomic_path, write_json
from mmgenrec.methods.base import Evaluation, read_sequences, train_sequences
from mmgenrec.methods.seqtrain import TrainConfig, fit, score_histories

log = logging.getLogger(__name__)

TRAIN_KEYS = {f.name for f in fields(TrainConfig)}
OTHER_KEYS = {"kind", "grid", "candidates_k", "train_candidates", "device"}


def train_config(cfg: Mapping) -> tuple[TrainConfig, list[TrainConfig], list[str]]:
    """The method entry -> (base settings, every grid point in a fixed order: the grid's keys sorted, values as
    listed). An empty grid is the base setting alone."""
    unknown = set(cfg) - TRAIN_KEYS - OTHER_KEYS
    if unknown:
        raise ValueError(f"unknown sequential settings {sorted(unknown)}")
    base = TrainConfig(**{k: v for k, v in cfg.items() if k in TRAIN_KEYS})
    grid = cfg.get("grid") or {}
    bad = set(grid) - (TRAIN_KEYS - {"model", "seed"})
    if bad:
        raise ValueError(f"grid keys {sorted(bad)} are not tunable settings")
    keys = sorted(grid)
    points = [replace(base, **dict(zip(keys, values))) for values in itertools.product(*(grid[k] for k in keys))]
    return base, points or [base], keys


def candidate_rows(net, sequences: Mapping[str, list[int]], cut: int, k: int, batch_size: int) -> list[dict]:
    """Top-``k`` candidates (history excluded) of every user's prefix ``seq[:-cut]``, target ``seq[-cut]``."""
    users = list(sequences)
    hist = [sequences[u][: len(sequences[u]) - cut] for u in users]
    top, _ = score_histories(net, hist, batch_size, exclude=True, k=k, desc=f"candidates cut={cut}")
    return [{"user": u, "target": int(sequences[u][len(sequences[u]) - cut]), "candidates": c}
            for u, c in zip(users, top)]


def train_candidate_rows(net, train: Mapping[str, list[int]], mode: str, k: int, batch_size: int) -> list[dict]:
    """Candidates of training prefixes: ``all`` (every position after the first) or ``last`` (the last one)."""
    if mode == "none":
        return []
    pairs = [(u, t) for u, seq in train.items()
             for t in (range(1, len(seq)) if mode == "all" else [len(seq) - 1] if len(seq) > 1 else [])]
    top, _ = score_histories(net, [train[u][:t] for u, t in pairs], batch_size, exclude=True, k=k,
                             desc="candidates train")
    return [{"user": u, "history_len": t, "target": int(train[u][t]), "candidates": c}
            for (u, t), c in zip(pairs, top)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def recall(rows: list[dict]) -> float:
    return sum(r["target"] in r["candidates"] for r in rows) / len(rows) if rows else 0.0


def run_sequential(inter_json, metrics_path, topk_path, candidates_dir, train_log_path, *, cfg: Mapping,
                   evaluation: Mapping, method: str = "sequential", checkpoints: str | Path | None = None,
                   on_batch=None) -> dict:
    """Train (grid + early stopping on valid), evaluate, write candidates. See the module docstring."""
    ev = Evaluation.from_params(evaluation)
    sequences = read_sequences(inter_json)
    n_items = 1 + max(i for seq in sequences.values() for i in seq)
    train = train_sequences(sequences)
    users = list(sequences)
    valid_hist = [train[u] for u in users]
    valid_targets = [sequences[u][-2] for u in users]
    base, points, keys = train_config(cfg)
    device = cfg.get("device", "auto")
    t0 = time.monotonic()
    runs, best = [], None
    for i, point in enumerate(points):
        setting = {k: getattr(point, k) for k in keys}
        log.info("%s: grid point %d/%d %s", method, i + 1, len(points), setting)
        ckpt = Path(checkpoints) / f"grid{i}" if checkpoints else None
        res = fit(point, train, n_items, valid_hist, valid_targets, checkpoint_dir=ckpt,
                  exclude_history=ev.exclude_history, device=device, on_batch=on_batch)
        runs.append({"setting": setting, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                     "seconds": round(res.seconds, 2), "valid": res.best, "curve": res.curve})
        if best is None or res.best[point.select_metric] > best[1].best[point.select_metric]:
            best = (i, res, point)
    chosen, res, point = best
    net = res.net
    # the evaluated split: history excluded by masking when configured, else the plain top-k
    examples = ev.examples(sequences)
    ranked, _ = score_histories(net, [e.history for e in examples], point.eval_batch_size,
                                exclude=ev.exclude_history, k=ev.top_k, desc=f"rank {ev.split}")
    # candidate lists (history always excluded), all users
    k = int(cfg.get("candidates_k", 20))
    cand = {"valid": candidate_rows(net, sequences, 2, k, point.eval_batch_size),
            "test": candidate_rows(net, sequences, 1, k, point.eval_batch_size),
            "train": train_candidate_rows(net, train, cfg.get("train_candidates", "last"), k, point.eval_batch_size)}
    cdir = Path(candidates_dir)
    cdir.mkdir(parents=True, exist_ok=True)
    for split, rows in cand.items():
        write_jsonl(cdir / f"{split}.jsonl", rows)
    recalls = {"k": k, "method": method, **{f"{s}_recall@{k}": recall(r) for s, r in cand.items() if r},
               "n_users": {s: len(r) for s, r in cand.items()}}
    write_json(cdir / "recall.json", recalls)
    seconds = time.monotonic() - t0
    selected = asdict(point)
    write_json(train_log_path, {"method": method, "model": point.model, "selected_grid_point": chosen,
                                "selected": selected, "select_metric": point.select_metric, "grid": runs,
                                "seconds": round(seconds, 2)})
    summary = {"method": method, "invalid_beam_fraction": 0.0, "model": point.model, "selected": selected,
               "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
               "valid": res.best, "train_seconds": round(sum(r["seconds"] for r in runs), 2),
               "seconds": round(seconds, 2), "n_params": sum(p.numel() for p in net.parameters()),
               "candidates": recalls}
    return ev.write(metrics_path, topk_path, examples, {"0": ranked}, summary)
