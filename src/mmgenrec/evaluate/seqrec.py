"""Sequential recommendation evaluation: trie-constrained beam search over real item IDs, every test user once
per prompt template.

The item vocabulary comes from the index file (``results/<cat>/ids/<idset>/index.json``): any number of levels,
codes checked against ``codebook_size`` when given. When the index has collisions (several items share one token
tuple), the trie holds each tuple once and a decoded tuple stands for all its items, listed in ascending id order
(the model cannot tell them apart); ``collision_target_fraction`` reports how many test targets are affected.

Outputs (:func:`write_results`, shared with the baselines):

* ``seqrec_metrics.json``: the metrics averaged over users and templates (``HR@k``, ``NDCG@k``, ``MRR``), their
  mean/min/max over templates (``template_stats``), the per-template means (``per_template``), invalid-beam and
  collision-affected-target rates, timings;
* ``seqrec_topk.jsonl``: one line per test user: ``topk`` (first template), the per-user metrics averaged over the
  templates (what the summary's paired bootstrap resamples), ``collided_target``, and with several templates
  ``per_template`` top-k lists.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mmgenrec.evaluate.metrics import collided_items, collision_groups, per_user_metrics
from mmgenrec.evaluate.trie import ItemTrie, generate_topk
from mmgenrec.io import InputError, atomic_path, write_json
from mmgenrec.prompts import SEQREC_TEMPLATES, render, seqrec_messages, sid_string
from mmgenrec.prompts_lcrec import LCREC_TEMPLATES
from mmgenrec.prompts_lcrec import seqrec_prompt as lcrec_seqrec_prompt

log = logging.getLogger(__name__)

EOS_TOKEN = "<|im_end|>"  # the end-of-turn token that closes every answer at training time (prompts.render)
KS, NDCG_KS = (1, 5, 10), (5, 10)


def template_stats(per_template: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> {mean, min, max} over the templates' mean values (as the original study reports)."""
    names = next(iter(per_template.values())).keys()
    return {m: {"mean": float(np.mean([t[m] for t in per_template.values()])),
                "min": float(min(t[m] for t in per_template.values())),
                "max": float(max(t[m] for t in per_template.values()))} for m in names}


def write_results(metrics_path, topk_path, users: Sequence[str], targets: Sequence[int],
                  topk_by_template: dict[str, list[list[int]]], summary: dict, *,
                  collided: set[int] = frozenset()) -> dict:
    """Shared by every method: metrics JSON + per-user JSONL.

    ``topk_by_template`` maps a template id (as a string) to the ranked lists of every user; a baseline without
    prompts passes one entry. The headline metrics are means over users of the per-user metric averaged over
    templates (= the mean over templates of the per-template means).
    """
    if not topk_by_template:
        raise ValueError("no ranked lists")
    per_user = {tid: per_user_metrics(lists, targets, ks=KS, ndcg_ks=NDCG_KS) for tid, lists in topk_by_template.items()}
    names = list(next(iter(per_user.values())))
    user_mean = {m: np.mean([per_user[t][m] for t in per_user], axis=0) for m in names}
    per_template = {t: {m: float(v.mean()) for m, v in pu.items()} for t, pu in per_user.items()}
    hit = np.array([t in collided for t in targets], dtype=bool)
    first = next(iter(topk_by_template))
    with atomic_path(topk_path) as tmp, open(tmp, "w") as f:
        for i, (u, t) in enumerate(zip(users, targets)):
            row = {"user": u, "target": int(t), "topk": [int(x) for x in topk_by_template[first][i]],
                   **{m: float(v[i]) for m, v in user_mean.items()}, "collided_target": bool(hit[i])}
            if len(topk_by_template) > 1:
                row["per_template"] = {tid: [int(x) for x in lists[i]] for tid, lists in topk_by_template.items()}
            f.write(json.dumps(row) + "\n")
    result = {**{m: float(v.mean()) for m, v in user_mean.items()}, "n_users": len(users),
              "template_ids": list(topk_by_template), "per_template": per_template,
              "template_stats": template_stats(per_template),
              "collision_target_fraction": float(hit.mean()) if len(hit) else 0.0, **summary}
    write_json(metrics_path, result)
    return result


def item_trie(index: dict[int, list[str]], tokenizer, eos_token: str = EOS_TOKEN) -> tuple[ItemTrie, list[list[int]]]:
    """The trie over the index's distinct token tuples and, per trie entry, the items it stands for."""
    groups = collision_groups(index)
    vocab = tokenizer.get_vocab()
    missing = sorted({t for tup in groups for t in tup if t not in vocab})
    if missing:
        raise InputError(f"index tokens missing from the model's tokenizer (e.g. {missing[:5]}): the model was "
                         f"trained on another id set")
    tuples = list(groups)
    eos = vocab.get(eos_token, tokenizer.eos_token_id)
    trie = ItemTrie([[vocab[t] for t in tup] for tup in tuples], eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return trie, [groups[tup] for tup in tuples]


def expand(ranked_entries: list[int], entry_items: list[list[int]], top_k: int) -> list[int]:
    """Trie entries (best first) -> item ids, a colliding tuple's items in ascending id order, cut at ``top_k``."""
    out = [item for e in ranked_entries for item in entry_items[e]]
    return out[:top_k]


def load_index_file(index_json, codebook_size: int | None = None) -> dict[int, list[str]]:
    from mmgenrec.quantize.run import load_index  # the quantize stage's reader (collisions allowed here)

    return load_index(index_json, allow_collisions=True, codebook_size=codebook_size)


def evaluate_seqrec(
    base_dir: str | Path,
    adapter_dir: str | Path,
    inter_json: str | Path,
    index_json: str | Path,
    metrics_path: str | Path,
    topk_path: str | Path,
    *,
    method: str = "ours",
    split: str = "test",
    num_beams: int = 20,
    top_k: int = 10,
    batch_size: int = 16,
    max_history: int = 20,
    template_ids: Sequence[int] = (0,),
    codebook_size: int | None = None,
    max_users: int | None = None,
    exclude_history: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    decoder: str = "trie_beam",
    prompt_family: str | None = None,
) -> dict:
    """Decode every ``split`` user once per template in ``template_ids`` and write the metrics files.

    ``decoder``: ``trie_beam`` (one prefill per prompt, beams over the trie: :mod:`mmgenrec.evaluate.beam`) or
    ``hf`` (HF ``generate`` beam search + the trie processor, the reference); same items and scores.
    ``prompt_family`` (``ours`` or ``lcrec``: :mod:`mmgenrec.prompts_lcrec`) chooses the seqrec templates; None
    takes the one the adapter was trained with (its ``token_meta.json``). The base model may be Qwen2.5-VL or a
    text-only causal LM (:func:`mmgenrec.models.loading.load_finetuned` picks)."""
    from mmgenrec.models.loading import load_finetuned

    t0 = time.time()
    if num_beams < top_k:
        raise ValueError(f"num_beams ({num_beams}) must be >= top_k ({top_k}) to return {top_k} distinct items")
    template_ids = [int(t) for t in template_ids]
    if prompt_family is None:
        meta_file = Path(adapter_dir) / "token_meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        prompt_family = meta.get("prompt_family", "ours")
    n_templates = len(LCREC_TEMPLATES["seqrec"]) if prompt_family == "lcrec" else len(SEQREC_TEMPLATES)
    bad = [t for t in template_ids if not 0 <= t < n_templates]
    if not template_ids or bad:
        raise ValueError(f"template_ids must be non-empty and within 0..{n_templates - 1}, got {template_ids}")
    from mmgenrec.methods.base import Evaluation, read_sequences

    evaluation = Evaluation(split=split, top_k=top_k, max_users=max_users, exclude_history=exclude_history)
    sequences = read_sequences(inter_json)
    index = load_index_file(index_json, codebook_size)
    full = evaluation.examples(sequences)
    examples = [(e.user, e.history[-max_history:], e.target) for e in full]
    for user, history, target in examples:
        for item in (*history, target):
            if item not in index:
                raise InputError(f"{inter_json}: user {user}: item {item} is not in {index_json}")
    model, processor, _ = load_finetuned(base_dir, adapter_dir, device=device, dtype=dtype)
    tok = processor.tokenizer
    tok.padding_side = "left"
    trie, entry_items = item_trie(index, tok, getattr(processor, "answer_end", EOS_TOKEN))
    trie.to(model.device)
    log.info("%s: %d items, %d distinct ids x %d tokens; %d users x %d templates", method, len(index), len(trie),
             trie.depth, len(examples), len(template_ids))
    topk_by_template: dict[str, list[list[int]]] = {}
    n_invalid = n_beams = 0
    t_decode = time.time()
    for tid in template_ids:
        lists = []
        for start in tqdm(range(0, len(examples), batch_size), desc=f"seqrec {split} template {tid}", unit="batch"):
            chunk = examples[start:start + batch_size]
            messages = lcrec_seqrec_prompt if prompt_family == "lcrec" else seqrec_messages
            prompts = [render(processor, messages([sid_string(index[i]) for i in h], tid))[0] for _, h, _ in chunk]
            batch = processor(text=prompts, padding=True, return_tensors="pt").to(model.device)
            # with history exclusion every distinct beam is kept: the filter runs before the top_k cut
            keep = min(num_beams if exclude_history else top_k, len(trie))
            ranked, _, invalid = generate_topk(model, dict(batch), trie, num_beams=num_beams, top_k=keep,
                                               prompt_len=batch["input_ids"].shape[1], return_scores=False,
                                               backend=decoder)
            n_invalid += invalid
            n_beams += num_beams * len(chunk)
            lists += [expand(r, entry_items, num_beams if exclude_history else top_k) for r in ranked]
        topk_by_template[str(tid)] = lists
    decode_s = time.time() - t_decode
    summary = {"method": method, "num_beams": num_beams, "decoder": decoder,
               "invalid_beam_fraction": n_invalid / max(n_beams, 1), "n_invalid_beams": n_invalid,
               "n_distinct_ids": len(trie), "id_levels": trie.depth,
               "users_per_second": round(len(examples) * len(template_ids) / max(decode_s, 1e-9), 3),
               "seconds": round(time.time() - t0, 2)}
    if prompt_family != "ours":
        summary["prompt_family"] = prompt_family
    result = evaluation.write(metrics_path, topk_path, full, topk_by_template, summary,
                              collided=collided_items(index))
    log.info("%s %s: %s", method, split, {k: round(v, 4) for k, v in result.items() if k.startswith(("HR", "NDCG"))})
    return result
