"""Kind ``t5_genrec``: TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023).

A T5 encoder-decoder trained from scratch reads ``<user_h>`` (the user id hashed into 2000 buckets) followed by the
semantic-ID tokens of the last ``max_history`` items, and generates the next item's ID tokens + EOS. Every prefix of a
user's training part is a sample; the valid split selects the epoch (early stopping on ``select_metric``); the
configured split is ranked by trie-constrained beam search over the id set's items (collisions: a decoded tuple
stands for all its items, ascending ids, as in evaluate_seqrec).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from mmgenrec.evaluate.metrics import collided_items
from mmgenrec.evaluate.seqrec import item_trie
from mmgenrec.io import atomic_dir, write_json
from mmgenrec.methods.base import Evaluation, Example, read_sequences, train_sequences
from mmgenrec.methods.t5_data import T5Vocab, check_items, encoder_input, item_ids, load_id_set, prefix_samples
from mmgenrec.methods.t5_train import Ranker, TrainConfig, build_model, fingerprint, train, valid_metrics

log = logging.getLogger(__name__)


def valid_subset(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """A seeded sample of ``n`` valid examples (in file order), or all of them."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False))
    return [examples[i] for i in keep]


def tiger_samples(train: Mapping[str, Sequence[int]], vocab: T5Vocab, tok: Mapping[int, list[int]],
                  max_history: int) -> list[tuple[list[int], list[int]]]:
    return prefix_samples(train, tok, tok, max_history, lambda user: [vocab.user_token(user)])


def save_model(model_dir, model, vocab: T5Vocab, extra: dict) -> None:
    """The model (``save_pretrained``), its vocabulary and the training record, written atomically."""
    with atomic_dir(model_dir) as tmp:
        model.save_pretrained(tmp)
        vocab.save(Path(tmp) / "vocab.json")
        write_json(Path(tmp) / "training.json", extra)


def rank_split(ranker: Ranker, model, examples: Sequence[Example], make_input: Callable[[Example], list[int]],
               keep: int, desc: str, with_scores: bool = False):
    return ranker.rank(model, [make_input(e) for e in examples], keep, desc=desc, with_scores=with_scores)


def run_t5_genrec(inter_json, index_json, metrics_path, topk_path, model_dir, *, cfg: dict, evaluation: dict | Evaluation,
                  checkpoint_dir, method: str = "tiger", on_epoch_end=None) -> dict:
    """TIGER on one id set: train (train part), select (valid split), rank ``evaluation.split``, write results."""
    t0 = time.time()
    tc = TrainConfig.from_cfg(cfg)
    ev = evaluation if isinstance(evaluation, Evaluation) else Evaluation.from_params(evaluation)
    if tc.num_beams < ev.top_k:
        raise ValueError(f"num_beams ({tc.num_beams}) must be >= top_k ({ev.top_k})")
    torch.manual_seed(tc.seed)
    sequences = read_sequences(inter_json)
    index = load_id_set(index_json)
    check_items(sequences, index, inter_json, index_json)
    vocab = T5Vocab.build([index], n_user_buckets=int(cfg.get("user_buckets", 2000)))
    tok = item_ids(vocab, index)
    trie, entry_items = item_trie(index, vocab)
    train_part = train_sequences(sequences)
    samples = tiger_samples(train_part, vocab, tok, tc.max_history)
    log.info("%s: %d items (%d distinct ids x %d tokens), vocabulary %d, %d training samples", method, len(index),
             len(trie), trie.depth, len(vocab), len(samples))

    def make_input(e: Example) -> list[int]:
        return encoder_input(e.history, tok, tc.max_history, [vocab.user_token(e.user)])

    model = build_model(len(vocab), tc.model, tc.seed)
    ranker = Ranker(trie, entry_items, tc.num_beams, tc.eval_batch_size)
    valid = valid_subset(ev.examples(sequences, "valid"), tc.valid_users, tc.seed)
    valid_inputs, valid_targets = [make_input(e) for e in valid], [e.target for e in valid]
    key = fingerprint(method, cfg, len(samples), len(vocab), sum(map(sum, tok.values())))
    record = train(model, lambda epoch: samples, lambda m: valid_metrics(ranker, m, valid_inputs, valid_targets),
                   tc, checkpoint_dir, key=key, on_epoch_end=on_epoch_end)

    test_ranker = Ranker(trie, entry_items, tc.num_beams, tc.eval_batch_size)
    examples = ev.examples(sequences)
    keep = tc.num_beams if ev.exclude_history else ev.top_k
    lists = rank_split(test_ranker, model, examples, make_input, keep, f"{method} {ev.split}")
    summary = {"method": method, "kind": "t5_genrec", "invalid_beam_fraction": test_ranker.invalid_fraction,
               "n_invalid_beams": test_ranker.n_invalid, "num_beams": tc.num_beams, "n_distinct_ids": len(trie),
               "id_levels": trie.depth, "n_train_samples": len(samples), "best_epoch": record["best_epoch"],
               "stopped": record["stopped"], "valid_best": record["best"], "n_valid_users": len(valid),
               "train_seconds": round(record["train_seconds"], 2), "seconds": round(time.time() - t0, 2)}
    save_model(model_dir, model, vocab, {**summary, "history": record["history"]})
    result = ev.write(metrics_path, topk_path, examples, {"0": lists}, summary, collided=collided_items(index))
    log.info("%s %s: %s", method, ev.split, {k: round(v, 4) for k, v in result.items() if k.startswith(("HR", "NDCG"))})
    return result
