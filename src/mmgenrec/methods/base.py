"""What every method shares: the evaluated users of a split, the training part, and the one way results are written.

The split is chronological leave-one-out over ``inter.json`` (user -> item ids in time order): the last item is the
test target, the second last the valid target, everything before is the training part. A method trains on the
training part only (``train_sequences``); valid-split inputs are the training part, test-split inputs the training
part plus the valid item. No input ever contains the target (asserted in :meth:`Evaluation.examples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from mmgenrec.evaluate.seqrec import write_results
from mmgenrec.io import InputError, read_json

CUT = {"test": 1, "valid": 2}


@dataclass(frozen=True)
class Example:
    user: str
    history: list[int]  # every item before the target, oldest first (methods truncate to their own window)
    target: int


def read_sequences(inter_json: str | Path) -> dict[str, list[int]]:
    """``inter.json`` checked: user -> list of >= 3 non-negative int item ids (leave-one-out needs 3)."""
    raw = read_json(inter_json)
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{inter_json}: expected a non-empty JSON object user -> item ids")
    out = {}
    for user, seq in raw.items():
        if not isinstance(seq, list) or not all(isinstance(i, int) and i >= 0 for i in seq):
            raise InputError(f"{inter_json}: user {user}: expected a list of non-negative integer item ids")
        if len(seq) < 3:
            raise InputError(f"{inter_json}: user {user}: sequence of {len(seq)} items; leave-one-out needs 3")
        out[str(user)] = seq
    return out


def train_sequences(sequences: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """The training part of every user: the sequence without its valid and test items."""
    return {u: list(s[:-2]) for u, s in sequences.items()}


def map_at_k(ranked: Sequence[int], target: int, k: int = 12) -> float:
    """Kaggle's AP@k for one customer whose one relevant article is ``target``: with a single relevant item the
    average precision is ``1/rank`` when it is among the first ``k``, else 0 (MAP@12 is its mean over customers)."""
    head = [int(i) for i in ranked[:k]]
    return 1.0 / (head.index(int(target)) + 1) if int(target) in head else 0.0


@dataclass(frozen=True)
class Evaluation:
    """The evaluate section's method-independent settings (the rules pass them as ``params.evaluation``)."""

    split: str = "test"
    top_k: int = 10
    max_users: int | None = None
    exclude_history: bool = False
    map_k: int | None = None  # H&M categories: also MAP@map_k (the Kaggle metric, 12), on lists that long

    @classmethod
    def from_params(cls, params: Mapping) -> Evaluation:
        names = {f.name for f in fields(cls)}
        ev = cls(**{k: v for k, v in params.items() if k in names})
        if ev.split not in CUT:
            raise ValueError(f"split must be one of {sorted(CUT)}, got {ev.split!r}")
        return ev

    def examples(self, sequences: Mapping[str, Sequence[int]], split: str | None = None) -> list[Example]:
        """The evaluated users of ``split`` (default: this evaluation's), the first ``max_users`` in file order."""
        cut = CUT[split or self.split]
        out = []
        for user, seq in list(sequences.items())[: self.max_users]:
            history, target = list(seq[: len(seq) - cut]), int(seq[len(seq) - cut])
            out.append(Example(str(user), history, target))
        return out

    def n_ranked(self, max_history: int) -> int:
        """How long a ranked list a method must produce so that ``top_k`` remain after history exclusion."""
        return max(self.top_k, self.map_k or 0) + (max_history if self.exclude_history else 0)

    def finish(self, ranked: Sequence[int], history: Sequence[int], k: int | None = None) -> list[int]:
        """A method's ranked list -> the scored list: history items dropped when configured, cut at ``top_k``."""
        if self.exclude_history:
            seen = set(history)
            ranked = [i for i in ranked if i not in seen]
        return [int(i) for i in ranked[: k or self.top_k]]

    def write(self, metrics_path, topk_path, examples: Sequence[Example], lists_by_template: dict[str, list],
              summary: dict, *, collided=frozenset()) -> dict:
        """Metrics JSON + per-user JSONL through the one metric code (:func:`write_results`); with ``map_k`` the
        summary also gets ``MAP@<map_k>`` (mean over users and templates of :func:`map_at_k`)."""
        if self.map_k:
            aps = [map_at_k(self.finish(r, ex.history, self.map_k), ex.target, self.map_k)
                   for lists in lists_by_template.values() for r, ex in zip(lists, examples)]
            summary = {f"MAP@{self.map_k}": sum(aps) / max(len(aps), 1), **summary}
        finished = {t: [self.finish(r, ex.history) for r, ex in zip(lists, examples)]
                    for t, lists in lists_by_template.items()}
        summary = {"split": self.split, "top_k": self.top_k, "exclude_history": self.exclude_history, **summary}
        return write_results(metrics_path, topk_path, [e.user for e in examples], [e.target for e in examples],
                             finished, summary, collided=collided)
