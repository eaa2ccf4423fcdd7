"""Popularity baseline: the same top-k list for every user, from training-part counts; same split and metrics."""

from __future__ import annotations

from pathlib import Path

from mmgenrec.evaluate.metrics import popularity_topk
from mmgenrec.evaluate.seqrec import split_examples, write_results
from mmgenrec.io import read_json


def evaluate_popularity(inter_json: str | Path, metrics_path: str | Path, topk_path: str | Path, *,
                        split: str = "test", top_k: int = 10) -> dict:
    sequences = read_json(inter_json)
    n_items = 1 + max(i for seq in sequences.values() for i in seq)
    ranked = popularity_topk([seq[:-2] for seq in sequences.values()], n_items, top_k)
    examples = split_examples(sequences, split, max_history=1)
    return write_results(metrics_path, topk_path, [u for u, _, _ in examples], [t for _, _, t in examples],
                         {"none": [ranked] * len(examples)},
                         {"method": "popularity", "split": split, "invalid_beam_fraction": 0.0})
