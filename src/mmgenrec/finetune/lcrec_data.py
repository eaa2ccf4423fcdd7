"""LC-Rec's training examples (:mod:`mmgenrec.prompts_lcrec`) in the format of :func:`mmgenrec.finetune.data.
build_examples` (``{"task", "template", "messages", "answer", "image"}``), so that they train through the same
dataset, collator and trainer.

Natural counts: ``seqrec`` and ``fusionseqrec``: one example per position of every user's training part (the
sequence without its valid and test items; history = the up to ``max_history`` items before it); ``item2index``
and ``index2item``: one per item of the index that has a title. Each task contributes ``round(weight x count)``
examples, each with a template drawn from ``templates`` among those whose fields the item has (an item without a
description only gets title templates). Each task has its own seeded generator.
"""

from __future__ import annotations

import logging
import random

from mmgenrec.finetune.data import _sample, seqrec_pairs
from mmgenrec.prompts import _as_text, sid_string
from mmgenrec.prompts_lcrec import HIS_SEP, LCREC_TASKS, LCREC_TEMPLATES, clean_title, lcrec_messages, needed_fields

log = logging.getLogger(__name__)

DEFAULT_LCREC_TASKS = {t: {"weight": 1.0, "templates": list(range(len(LCREC_TEMPLATES[t])))} for t in LCREC_TASKS}


def _fields(item: dict | None, max_chars: int) -> dict:
    item = item or {}
    title = clean_title(item) or None
    description = _as_text(item.get("description"))[:max_chars] or None
    return {"title": title, "description": description}


def build_lcrec_examples(
    tasks: dict[str, dict],
    *,
    index: dict[int, list[str]],
    sequences: dict[str, list[int]] | None = None,
    items: dict[str, dict] | None = None,
    max_history: int = 20,
    max_chars: int = 2000,
    seed: int = 0,
    epoch: int = 0,
    **_ignored,
) -> list[dict]:
    """Every training example of LC-Rec's task mix (see the module docstring); the weighted sample and the templates
    are drawn again for every ``epoch`` (seeded by seed and epoch), as LC-Rec re-samples its data each epoch."""
    unknown = sorted(set(tasks) - set(LCREC_TASKS))
    if unknown:
        raise ValueError(f"unknown LC-Rec tasks {unknown}; expected some of {LCREC_TASKS}")
    examples = []
    for t_idx, task in enumerate(LCREC_TASKS):
        spec = tasks.get(task)
        if not spec or spec.get("weight", 1.0) <= 0:
            continue
        templates = list(spec.get("templates") or range(len(LCREC_TEMPLATES[task])))
        bad = [t for t in templates if not 0 <= t < len(LCREC_TEMPLATES[task])]
        if bad:
            raise ValueError(f"task {task}: template ids {bad} do not exist (0..{len(LCREC_TEMPLATES[task]) - 1})")
        if task != "seqrec" and items is None:
            raise ValueError(f"task {task} needs the item metadata (item.json)")
        if task in ("seqrec", "fusionseqrec") and sequences is None:
            raise ValueError(f"task {task} needs the interaction sequences")
        rng = random.Random(seed * 1000 + 100 + t_idx + 1_000_003 * epoch)
        if task in ("seqrec", "fusionseqrec"):
            pool = seqrec_pairs(sequences, max_history)
        else:
            pool = [(None, i) for i in sorted(index) if _fields(items.get(str(i)), max_chars)["title"]]
        chosen = _sample(rng, pool, float(spec.get("weight", 1.0)))
        for history, target in chosen:
            f = _fields((items or {}).get(str(target)), max_chars)
            f["item"] = sid_string(index[target])
            if history is not None:
                f["inters"] = HIS_SEP.join(sid_string(index[i]) for i in history)
                titles = [_fields(items.get(str(i)), max_chars)["title"] for i in history] if items else [None]
                f["inter_titles"] = HIS_SEP.join(f'"{t}"' for t in titles) if all(titles) else None
            usable = [t for t in templates if all(f.get(k) for k in needed_fields(task, t))]
            if not usable:
                continue
            template = rng.choice(usable)
            msgs, answer = lcrec_messages(task, template, **f)
            examples.append({"task": task, "template": template, "messages": msgs, "answer": answer, "image": None})
        log.info("task %s: %d examples (of %d, templates %s)", task, sum(e["task"] == task for e in examples),
                 len(pool), templates)
    return examples
