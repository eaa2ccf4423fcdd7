"""Popularity baseline: the training-part counts rank every item, the same list for every user; same split, users,
history rule and metric code as every other method (:class:`mmgenrec.methods.base.Evaluation`)."""

from __future__ import annotations

from pathlib import Path

from mmgenrec.evaluate.metrics import popularity_topk


def evaluate_popularity(inter_json: str | Path, metrics_path: str | Path, topk_path: str | Path, *,
                        split: str = "test", top_k: int = 10, max_users: int | None = None,
                        exclude_history: bool = False, map_k: int | None = None) -> dict:
    from mmgenrec.methods.base import Evaluation, read_sequences, train_sequences

    evaluation = Evaluation(split=split, top_k=top_k, max_users=max_users, exclude_history=exclude_history,
                            map_k=map_k)
    sequences = read_sequences(inter_json)
    n_items = 1 + max(i for seq in sequences.values() for i in seq)
    examples = evaluation.examples(sequences)
    depth = max(len(e.history) for e in examples) if exclude_history else 0
    ranked = popularity_topk(list(train_sequences(sequences).values()), n_items, min(n_items, evaluation.n_ranked(depth)))
    return evaluation.write(metrics_path, topk_path, examples, {"none": [ranked] * len(examples)},
                            {"method": "popularity", "invalid_beam_fraction": 0.0})
