"""Training samples and model inputs of the sequential ID baselines (item ``i`` = token ``i + 1``, 0 = padding).

* Causal models (SASRec, GRU4Rec, LRURec): a training sample is a window of at most ``max_len + 1`` consecutive
  training items; the input is the window without its last item, the label at every position the next item.
  Every position of every training part is a target exactly once (a long part is cut into windows ending at its
  end, ``max_len`` targets apart), so every prefix is a sample, as in the papers' implementations.
* BERT4Rec: a window of at most ``max_len`` training items; each epoch masks positions at random (cloze).
* Inference: the history's last ``max_len`` items (BERT4Rec: ``max_len - 1`` and a trailing ``[mask]``).

Only :func:`mmgenrec.methods.base.train_sequences` (the training part) ever reaches these builders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Sample:
    user: int             # index of the user in the training mapping (for instrumentation and tests)
    items: tuple[int, ...]  # consecutive training items (0-based ids), oldest first


def causal_samples(train: Mapping[str, Sequence[int]], max_len: int) -> list[Sample]:
    """Windows of ``<= max_len + 1`` items; every training position after a user's first is a target once."""
    out = []
    for u, seq in enumerate(train.values()):
        for end in range(len(seq), 1, -max_len):
            out.append(Sample(u, tuple(int(i) for i in seq[max(0, end - max_len - 1):end])))
    return out


def cloze_samples(train: Mapping[str, Sequence[int]], max_len: int) -> list[Sample]:
    """Windows of ``<= max_len`` items (at least 2), the last ending at the training part's end."""
    out = []
    for u, seq in enumerate(train.values()):
        for end in range(len(seq), 1, -max_len):
            out.append(Sample(u, tuple(int(i) for i in seq[max(0, end - max_len):end])))
    return out


def left_pad(rows: Sequence[Sequence[int]], width: int | None = None) -> torch.Tensor:
    """Token rows right-aligned in a ``(B, width)`` matrix (width: the longest row), zeros on the left."""
    width = width or max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for b, row in enumerate(rows):
        if row:
            out[b, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
    return out


def causal_batch(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) as tokens: labels[b, j] is the item after inputs[b, j]; 0 where there is none."""
    inputs = left_pad([[i + 1 for i in s.items[:-1]] for s in samples])
    labels = left_pad([[i + 1 for i in s.items[1:]] for s in samples])
    return inputs, labels


def cloze_batch(samples: Sequence[Sample], mask_prob: float, mask_token: int, rng: np.random.Generator,
                last_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels): each item replaced by ``[mask]`` with probability ``mask_prob`` (at least one per row);
    labels hold the masked items' tokens, 0 elsewhere. With probability ``last_prob`` a row masks its last item
    only (BERT4Rec, section 3.6: samples that mask only the last item, as the test input does)."""
    rows_in, rows_lab = [], []
    for s in samples:
        tokens = np.asarray(s.items, dtype=np.int64) + 1
        masked = rng.random(len(tokens)) < mask_prob
        if last_prob > 0 and rng.random() < last_prob:
            masked[:] = False
            masked[-1] = True
        if not masked.any():
            masked[rng.integers(len(tokens))] = True
        rows_in.append(np.where(masked, mask_token, tokens).tolist())
        rows_lab.append(np.where(masked, tokens, 0).tolist())
    return left_pad(rows_in), left_pad(rows_lab)


def inference_inputs(histories: Sequence[Sequence[int]], max_len: int, mask_token: int | None) -> torch.Tensor:
    """The model input of each history: its last ``max_len`` items (with ``mask_token``: ``max_len - 1`` and the
    mask last). An empty history gives an all-padding row (the model then scores from its biases alone)."""
    rows = []
    for h in histories:
        tokens = [int(i) + 1 for i in h]
        if mask_token is None:
            rows.append(tokens[-max_len:])
        else:
            rows.append((tokens[-(max_len - 1):] if max_len > 1 else []) + [mask_token])
    return left_pad(rows, max(1, max(len(r) for r in rows)))
