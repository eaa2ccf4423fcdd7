"""The T5 trainer shared by TIGER and MQL4Rec: a ``T5ForConditionalGeneration`` built from a ``T5Config`` (no
pretrained weights), teacher-forced cross-entropy on the target item's tokens + EOS, validation by trie-constrained
beam search (:func:`mmgenrec.evaluate.trie.generate_topk`, the project's one constrained decoder), early stopping on
a valid-split metric, and a checkpoint after every epoch so that a killed run resumes where it stopped.

Determinism: the model is initialised under ``torch.manual_seed(seed)``; epoch ``e`` shuffles with
``numpy.random.default_rng([seed, e])``; the torch RNG state (dropout) is stored in the checkpoint. A resumed run
therefore replays exactly the batches and dropout masks an uninterrupted run would have seen.

Optimizers: ``adamw`` (torch AdamW) or ``adafactor`` (torch Adafactor, what T5X, TIGER's framework, uses by
default). Schedules: ``inverse_sqrt`` (TIGER: constant ``lr`` for ``warmup_steps``, then ``lr * sqrt(warmup /
step)``), ``cosine`` (MQL4GRec: linear warm-up over ``warmup_ratio`` of the steps, then cosine to 0) or
``constant``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import T5Config, T5ForConditionalGeneration

from mmgenrec.evaluate.metrics import rank_metrics
from mmgenrec.evaluate.seqrec import expand
from mmgenrec.evaluate.trie import ItemTrie, generate_topk
from mmgenrec.io import atomic_path
from mmgenrec.methods.t5_data import EOS, PAD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    """TIGER's encoder-decoder (Rajput et al. 2023, sec. 4): 4 + 4 layers, 6 heads of 64, d_model 128, MLP 1024,
    dropout 0.1, ReLU."""

    d_model: int = 128
    d_kv: int = 64
    d_ff: int = 1024
    num_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 6
    dropout: float = 0.1
    activation: str = "relu"


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    max_history: int = 20
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "inverse_sqrt"
    warmup_steps: int = 10000
    warmup_ratio: float = 0.01
    batch_size: int = 256
    max_epochs: int = 200
    eval_every: int = 1
    patience: int = 10
    select_metric: str = "NDCG@10"
    num_beams: int = 20
    eval_batch_size: int = 64
    valid_users: int | None = None  # early stopping on a seeded sample of this many valid users (None: all)
    grad_clip: float = 1.0
    time_budget_s: float | None = None  # stop training after this much training time (a bounded CPU run)
    samples_per_epoch: int | None = None  # an "epoch" is this many samples (a chunk of a pass), for finer curves
    length_grouping: bool = True  # batches of similar input length (less padding; same samples, same objective)
    device: str = "auto"  # cuda when available, else cpu
    seed: int = 0

    @classmethod
    def from_cfg(cls, cfg: dict, **overrides) -> TrainConfig:
        cfg = {**cfg, **overrides}
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in cfg.items() if k in names and k != "model"}
        model = ModelConfig(**{**asdict(ModelConfig()), **(cfg.get("model") or {})})
        out = cls(model=model, **kw)
        if out.optimizer not in ("adamw", "adafactor"):
            raise ValueError(f"optimizer must be adamw or adafactor, got {out.optimizer!r}")
        if out.schedule not in ("inverse_sqrt", "cosine", "constant"):
            raise ValueError(f"schedule must be inverse_sqrt, cosine or constant, got {out.schedule!r}")
        return out


def build_model(vocab_size: int, mc: ModelConfig, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, d_model=mc.d_model, d_kv=mc.d_kv, d_ff=mc.d_ff,
                      num_layers=mc.num_layers, num_decoder_layers=mc.num_decoder_layers, num_heads=mc.num_heads,
                      dropout_rate=mc.dropout, feed_forward_proj=mc.activation, pad_token_id=PAD,
                      eos_token_id=EOS, decoder_start_token_id=PAD, tie_word_embeddings=True)
    return T5ForConditionalGeneration(config)


def collate(samples: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Right-padded encoder inputs with their mask; labels padded with -100 (ignored by the loss)."""
    width = max(len(s[0]) for s in samples)
    lwidth = max(len(s[1]) for s in samples)
    ids = torch.full((len(samples), width), PAD, dtype=torch.long)
    labels = torch.full((len(samples), lwidth), -100, dtype=torch.long)
    for r, (x, y) in enumerate(samples):
        ids[r, :len(x)] = torch.tensor(x)
        labels[r, :len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": (ids != PAD).long(), "labels": labels}


class Ranker:
    """Encoder inputs -> ranked item ids through the trie decoder (collisions expanded as evaluate_seqrec does)."""

    def __init__(self, trie: ItemTrie, entry_items: list[list[int]], num_beams: int, batch_size: int):
        self.trie, self.entry_items = trie, entry_items
        self.num_beams, self.batch_size = min(num_beams, len(trie)), batch_size
        self.n_invalid = self.n_beams = 0

    @torch.no_grad()
    def rank(self, model, inputs: Sequence[list[int]], keep: int, *, desc: str = "rank",
             with_scores: bool = False):
        """Per input the best ``keep`` items (and, ``with_scores``, per item its beam's sum of log-probs)."""
        was_training = model.training
        model.eval()
        keep = min(keep, self.num_beams)
        lists, scores = [], []
        for start in tqdm(range(0, len(inputs), self.batch_size), desc=desc, unit="batch", leave=False):
            chunk = inputs[start:start + self.batch_size]
            batch = collate([(x, [EOS]) for x in chunk])
            batch.pop("labels")
            device = next(model.parameters()).device
            batch = {k: v.to(device) for k, v in batch.items()}
            if self.trie.device != device:
                self.trie.to(device)
            ranked, sc, invalid = generate_topk(model, batch, self.trie, num_beams=self.num_beams,
                                                top_k=min(keep, len(self.trie)), return_scores=with_scores)
            self.n_invalid += invalid
            self.n_beams += self.num_beams * len(chunk)
            for entries, entry_scores in zip(ranked, sc if with_scores else [None] * len(ranked)):
                lists.append(expand(entries, self.entry_items, 10**9))
                if with_scores:
                    scores.append([s for e, s in zip(entries, entry_scores) for _ in self.entry_items[e]])
        model.train(was_training)
        return (lists, scores) if with_scores else lists

    @property
    def invalid_fraction(self) -> float:
        return self.n_invalid / max(self.n_beams, 1)


def valid_metrics(ranker: Ranker, model, inputs: Sequence[list[int]], targets: Sequence[int]) -> dict[str, float]:
    lists = ranker.rank(model, inputs, 10, desc="valid")
    return rank_metrics([lst[:10] for lst in lists], targets)


def _scheduler(opt, tc: TrainConfig, total_steps: int):
    if tc.schedule == "inverse_sqrt":
        warm = max(1, tc.warmup_steps)
        fn = lambda step: 1.0 if step < warm else math.sqrt(warm / (step + 1))  # noqa: E731
    elif tc.schedule == "cosine":
        warm = max(1, int(round(tc.warmup_ratio * total_steps)))
        fn = lambda step: (step + 1) / warm if step < warm else \
            0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))  # noqa: E731
    else:
        fn = lambda step: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def _optimizer(model, tc: TrainConfig):
    if tc.optimizer == "adafactor":
        return torch.optim.Adafactor(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)


def make_batches(order: np.ndarray, lengths: Sequence[int], tc: TrainConfig, rng) -> list[np.ndarray]:
    """``order`` cut into batches; with ``length_grouping`` every run of 50 batches is sorted by input length
    before cutting and the batches are shuffled (``rng``), so a batch pads to similar lengths."""
    bs = tc.batch_size
    if not tc.length_grouping:
        return [order[i:i + bs] for i in range(0, len(order), bs)]
    lengths = np.asarray(lengths)
    out = []
    for lo in range(0, len(order), 50 * bs):
        block = order[lo:lo + 50 * bs]
        block = block[np.argsort(lengths[block], kind="stable")]
        out += [block[i:i + bs] for i in range(0, len(block), bs)]
    return [out[i] for i in rng.permutation(len(out))]


def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train(model, samples_of_epoch: Callable[[int], list], validate: Callable[[object], dict], tc: TrainConfig,
          checkpoint_dir: str | Path, *, key: str, on_epoch_end: Callable[[int], None] | None = None) -> dict:
    """Train with early stopping on ``validate(model)[tc.select_metric]``; load the best weights into ``model``.

    ``samples_of_epoch(p)`` gives pass ``p``'s samples (deterministic in ``p``; with ``samples_per_epoch`` a pass
    is cut into chunks of about that many samples and each chunk counts as an epoch); ``key`` fingerprints the data and
    settings: a checkpoint with another key is ignored (started afresh), one marked done is reused as is. Returns
    ``{"history": [...], "best_epoch", "best": {metrics}, "stopped": reason, "train_seconds"}``.
    """
    ckpt = Path(checkpoint_dir)
    last, best_path = ckpt / "last.pt", ckpt / "best.pt"
    n_per_epoch = len(samples_of_epoch(0))
    chunks = max(1, math.ceil(n_per_epoch / tc.samples_per_epoch)) if tc.samples_per_epoch else 1
    steps_per_epoch = math.ceil(n_per_epoch / chunks / tc.batch_size)
    device = resolve_device(tc.device)
    model.to(device)
    opt = _optimizer(model, tc)
    sched = _scheduler(opt, tc, steps_per_epoch * tc.max_epochs)
    state = {"epoch": 0, "history": [], "best": None, "best_epoch": None, "bad": 0, "stopped": None,
             "train_seconds": 0.0}
    if last.exists():
        saved = torch.load(last, map_location=device, weights_only=False)
        if saved.get("key") == key:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["rng"].cpu())
            state = saved["state"]
            log.info("resumed from %s at epoch %d", last, state["epoch"])
        else:
            log.info("ignoring %s: written for other data or settings", last)
    model.train()
    while state["stopped"] is None:
        epoch = state["epoch"]
        pass_, part = divmod(epoch, chunks)
        samples = samples_of_epoch(pass_)
        order = np.random.default_rng([tc.seed, pass_]).permutation(len(samples))
        order = order[part * len(order) // chunks:(part + 1) * len(order) // chunks]
        total, n, t0 = 0.0, 0, time.time()
        budget_hit = False
        batches = make_batches(order, [len(s[0]) for s in samples], tc, np.random.default_rng([tc.seed, epoch, 2]))
        for idx in tqdm(batches, desc=f"train epoch {epoch + 1}", unit="batch", leave=False):
            batch = {k: v.to(device) for k, v in collate([samples[i] for i in idx]).items()}
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            total += loss.item() * len(batch["input_ids"])
            n += len(batch["input_ids"])
            if tc.time_budget_s is not None and state["train_seconds"] + time.time() - t0 >= tc.time_budget_s:
                budget_hit = True
                break
        state["train_seconds"] += time.time() - t0
        state["epoch"] = epoch = epoch + 1
        row = {"epoch": epoch, "loss": total / max(n, 1), "samples": n, "lr": sched.get_last_lr()[0],
               "train_seconds": round(state["train_seconds"], 2)}
        last_epoch = epoch >= tc.max_epochs or budget_hit
        if epoch % tc.eval_every == 0 or last_epoch:
            metrics = validate(model)
            row["valid"] = metrics
            value = metrics[tc.select_metric]
            if state["best"] is None or value > state["best"][tc.select_metric]:
                state.update(best=metrics, best_epoch=epoch, bad=0)
                with atomic_path(best_path) as tmp:
                    torch.save(model.state_dict(), tmp)
            else:
                state["bad"] += 1
            if state["bad"] >= tc.patience:
                state["stopped"] = f"early stopping: no better valid {tc.select_metric} in {tc.patience} evaluations"
        log.info("epoch %d: %s", epoch, row)
        state["history"].append(row)
        if budget_hit:
            state["stopped"] = f"time budget of {tc.time_budget_s} s reached"
        elif epoch >= tc.max_epochs and state["stopped"] is None:
            state["stopped"] = f"max_epochs {tc.max_epochs} reached"
        with atomic_path(last) as tmp:
            torch.save({"key": key, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "rng": torch.get_rng_state(), "state": state}, tmp)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
    model.eval()
    return {k: state[k] for k in ("history", "best_epoch", "best", "stopped", "train_seconds")}
