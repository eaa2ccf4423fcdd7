"""Kind ``mql4rec``: MQL4Rec / MQL4GRec (Zhai et al., "Multimodal Quantitative Language for Generative
Recommendation", ICLR 2025; code github.com/axdyer/MQL4GRec), on the T5 trainer of :mod:`mmgenrec.methods.t5_train`.

Two id sets, one per modality: text (``<a_N>``..) and image (``<A_N>``..; an image id set spelled in lower case is
relabelled to upper case so that the two vocabularies never collide). The tasks of the public fine-tuning script
(``Tasks='seqrec,seqimage,item2image,image2item,fusionseqrec'``):

* ``seqrec``: text-ID history -> next item's text ID; ``seqimage``: the same in image IDs (every prefix of the
  training part, no prompt: the two modalities are told apart by their tokens);
* ``item2image`` / ``image2item``: one item's text ID -> its image ID and back, every item, after the task's soft
  prompt (``prompt_num`` task tokens);
* ``fusionseqrec``: the soft prompt, then the history in one modality -> the next item in the other, the direction
  drawn per sample and epoch with probability 1/2 (as the public dataset draws it per access).

Early stopping on the text ``seqrec`` valid split (the public ``Valid_task=seqrec``). Inference per modality (text ->
text, image -> image) by trie-constrained beam search, then the public ``ensemble.py`` fusion: walking both beam
lists rank by rank (text first), an item's score is its beam score, and an item found in both lists gets the
mean of its two scores plus ``fusion_bonus`` (1); the fused list is sorted by score (ties: first seen first).
Beam scores are length-normalised (sum of log-probs / generated tokens, HF's default ``length_penalty=1`` that
the public test script ranks with).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch

from mmgenrec.evaluate.metrics import collided_items, rank_metrics
from mmgenrec.evaluate.seqrec import item_trie
from mmgenrec.io import InputError
from mmgenrec.methods.base import Evaluation, Example, read_sequences, train_sequences
from mmgenrec.methods.t5_data import EOS, T5Vocab, check_items, encoder_input, item_ids, load_id_set, prefix_samples
from mmgenrec.methods.t5_genrec import save_model, valid_subset
from mmgenrec.methods.t5_train import Ranker, TrainConfig, build_model, fingerprint, train, valid_metrics

log = logging.getLogger(__name__)

TASKS = ("seqrec", "seqimage", "item2image", "image2item", "fusionseqrec")
PROMPTED = ("item2image", "image2item", "fusionseqrec")  # the public data classes prepend a soft prompt to these


def fuse(text: Sequence[tuple[int, float]], image: Sequence[tuple[int, float]], bonus: float = 1.0) -> list[int]:
    """The public ensemble: (item, score) lists, best first -> one ranked item list."""
    score: dict[int, float] = {}
    for r in range(max(len(text), len(image))):
        for lst in (text, image):
            if r < len(lst):
                item, s = lst[r]
                score[item] = (s + score[item]) / 2 + bonus if item in score else s
    return [i for i, _ in sorted(score.items(), key=lambda kv: -kv[1])]  # stable: ties keep first-seen order


class Tasks:
    """The training samples of every task; ``of_epoch(e)`` redraws the fusion directions for epoch ``e``."""

    def __init__(self, train_part, vocab: T5Vocab, ttok, itok, tasks: Sequence[str], prompt_num: int,
                 max_history: int, seed: int):
        bad = [t for t in tasks if t not in TASKS]
        if bad or not tasks:
            raise ValueError(f"mql4rec tasks must be a non-empty subset of {TASKS}, got {list(tasks)}")
        self.seed, self.tasks = seed, list(tasks)
        prompt = {t: vocab.encode([f"<task_{t}_{k}>" for k in range(prompt_num)]) for t in PROMPTED if t in tasks}
        self.static: list = []
        if "seqrec" in tasks:
            self.static += prefix_samples(train_part, ttok, ttok, max_history)
        if "seqimage" in tasks:
            self.static += prefix_samples(train_part, itok, itok, max_history)
        for task, src, tgt in (("item2image", ttok, itok), ("image2item", itok, ttok)):
            if task in tasks:
                self.static += [([*prompt[task], *src[i], EOS], [*tgt[i], EOS]) for i in sorted(src)]
        self.fusion = []
        if "fusionseqrec" in tasks:
            p = prompt["fusionseqrec"]
            t2i = prefix_samples(train_part, ttok, itok, max_history, lambda u: p)
            i2t = prefix_samples(train_part, itok, ttok, max_history, lambda u: p)
            self.fusion = list(zip(t2i, i2t))

    def of_epoch(self, epoch: int) -> list:
        if not self.fusion:
            return self.static
        pick = np.random.default_rng([self.seed, epoch, 1]).random(len(self.fusion)) < 0.5
        return self.static + [pair[int(b)] for pair, b in zip(self.fusion, pick)]


def _scored(items: list[int], scores: list[float], norm: float) -> list[tuple[int, float]]:
    return [(i, s / norm) for i, s in zip(items, scores)]


def run_mql4rec(inter_json, text_index_json, image_index_json, metrics_path, topk_path, model_dir, *, cfg: dict,
                evaluation: dict | Evaluation, checkpoint_dir, method: str = "mql4rec",
                modality_outputs: dict[str, tuple] | None = None, on_epoch_end=None) -> dict:
    """Train on the tasks, select on text seqrec valid, rank text -> text and image -> image, fuse.

    Writes the fused ranking to ``metrics_path``/``topk_path`` and, when ``modality_outputs`` gives
    ``{"text": (metrics, topk), "image": (metrics, topk)}``, each single-modality ranking there too (their metrics
    also sit in the fused metrics under ``per_modality``).
    """
    t0 = time.time()
    tc = TrainConfig.from_cfg({"schedule": "cosine", "lr": 5e-4, "batch_size": 64, **cfg})
    ev = evaluation if isinstance(evaluation, Evaluation) else Evaluation.from_params(evaluation)
    if tc.num_beams < ev.top_k:
        raise ValueError(f"num_beams ({tc.num_beams}) must be >= top_k ({ev.top_k})")
    tasks = list(cfg.get("tasks", TASKS))
    prompt_num = int(cfg.get("prompt_num", 4))
    torch.manual_seed(tc.seed)
    sequences = read_sequences(inter_json)
    text = load_id_set(text_index_json)
    image = load_id_set(image_index_json, upper=True)
    for index, path in ((text, text_index_json), (image, image_index_json)):
        check_items(sequences, index, inter_json, path)
    shared = {t for v in text.values() for t in v} & {t for v in image.values() for t in v}
    if shared:
        raise InputError(f"{text_index_json}: text tokens {sorted(shared)[:3]} also occur in the image id set "
                         f"{image_index_json} (text ids must use lower-case levels)")
    prompts = [f"<task_{t}_{k}>" for t in PROMPTED if t in tasks for k in range(prompt_num)]
    vocab = T5Vocab.build([text, image], prompt_tokens=prompts)
    ttok, itok = item_ids(vocab, text), item_ids(vocab, image)
    data = Tasks(train_sequences(sequences), vocab, ttok, itok, tasks, prompt_num, tc.max_history, tc.seed)
    tries = {"text": item_trie(text, vocab), "image": item_trie(image, vocab)}
    toks = {"text": ttok, "image": itok}
    log.info("%s: %d items, vocabulary %d, %d samples per epoch (%s)", method, len(text), len(vocab),
             len(data.of_epoch(0)), ",".join(tasks))

    def make_input(modality: str):
        return lambda e: encoder_input(e.history, toks[modality], tc.max_history)

    model = build_model(len(vocab), tc.model, tc.seed)
    valid = valid_subset(ev.examples(sequences, "valid"), tc.valid_users, tc.seed)
    vranker = Ranker(*tries["text"], tc.num_beams, tc.eval_batch_size)
    vin, vt = [make_input("text")(e) for e in valid], [e.target for e in valid]
    key = fingerprint(method, cfg, len(data.of_epoch(0)), len(vocab), sum(map(sum, ttok.values())),
                      sum(map(sum, itok.values())))
    record = train(model, data.of_epoch, lambda m: valid_metrics(vranker, m, vin, vt), tc, checkpoint_dir, key=key,
                   on_epoch_end=on_epoch_end)

    examples: list[Example] = ev.examples(sequences)
    keep = tc.num_beams if ev.exclude_history else ev.top_k
    ranked, rankers = {}, {}
    for modality in ("text", "image"):
        rankers[modality] = Ranker(*tries[modality], tc.num_beams, tc.eval_batch_size)
        inputs = [make_input(modality)(e) for e in examples]
        ranked[modality] = rankers[modality].rank(model, inputs, keep, desc=f"{method} {modality}", with_scores=True)
    norm = tries["text"][0].depth + 1  # generated tokens: the ID + EOS
    bonus = float(cfg.get("fusion_bonus", 1.0))
    fused = [fuse(_scored(*t, norm), _scored(*i, norm), bonus)
             for t, i in zip(zip(*ranked["text"]), zip(*ranked["image"]))]
    n_invalid = sum(r.n_invalid for r in rankers.values())
    n_beams = sum(r.n_beams for r in rankers.values())
    base = {"kind": "mql4rec", "num_beams": tc.num_beams, "tasks": tasks, "n_train_samples": len(data.of_epoch(0)),
            "best_epoch": record["best_epoch"], "stopped": record["stopped"], "valid_best": record["best"],
            "n_valid_users": len(valid), "train_seconds": round(record["train_seconds"], 2)}
    per_modality = {}
    for modality, index in (("text", text), ("image", image)):
        summary = {**base, "method": f"{method}[{modality}]", "modality": modality,
                   "invalid_beam_fraction": rankers[modality].invalid_fraction,
                   "n_invalid_beams": rankers[modality].n_invalid}
        out = (modality_outputs or {}).get(modality)
        if out:
            res = ev.write(out[0], out[1], examples, {"0": ranked[modality][0]}, summary,
                           collided=collided_items(index))
        else:
            res = rank_metrics([ev.finish(r, e.history) for r, e in zip(ranked[modality][0], examples)],
                               [e.target for e in examples])
        per_modality[modality] = {k: v for k, v in res.items() if k.startswith(("HR", "NDCG", "MRR"))}
    summary = {**base, "method": method, "fusion": f"public ensemble (mean of scores + {bonus} when in both lists)",
               "invalid_beam_fraction": n_invalid / max(n_beams, 1), "n_invalid_beams": n_invalid,
               "per_modality": per_modality, "seconds": round(time.time() - t0, 2)}
    save_model(model_dir, model, vocab, {**summary, "history": record["history"]})
    result = ev.write(metrics_path, topk_path, examples, {"0": fused}, summary,
                      collided=collided_items(text) | collided_items(image))
    log.info("%s %s fused: %s; per modality %s", method, ev.split,
             {k: round(v, 4) for k, v in result.items() if k.startswith(("HR", "NDCG"))}, per_modality)
    return result
