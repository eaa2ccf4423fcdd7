"""Training examples (seqrec and the multimodal item tasks) and collators that mask everything but the answer."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from mmgenrec.prompts import IMAGE_TASKS, TASKS, TEMPLATES, render, sid_string, task_messages

log = logging.getLogger(__name__)

IGNORE = -100


def seqrec_pairs(sequences: dict[str, list[int]], max_history: int) -> list[tuple[list[int], int]]:
    """(history, target) for every position of every user's TRAIN part (valid/test = last two items held out)."""
    pairs = []
    for seq in sequences.values():
        train = seq[:-2]
        for t in range(1, len(train)):
            pairs.append((train[max(0, t - max_history) : t], train[t]))
    return pairs


# ---------------------------------------------------------------------------------------------------------------
# Multitask examples (seqrec, mmitem2index, mmindex2item, mmitemenrich) with images, and their collator.

DEFAULT_TASKS = {task: {"weight": 1.0, "templates": list(range(len(TEMPLATES[task])))} for task in TASKS}


def _sample(rng: random.Random, pool: list, weight: float) -> list:
    """``round(weight * len(pool))`` elements: every element ``floor(weight)`` times, then a seeded sample of the
    rest without replacement (a weight of 0.5 keeps a random half, 2 repeats each element twice)."""
    n = round(weight * len(pool))
    whole, rest = divmod(n, len(pool)) if pool else (0, 0)
    return pool * whole + rng.sample(pool, rest)


def _image_path(image_dir: Path | None, item: dict) -> str | None:
    name = item.get("image")
    if image_dir is None or not name:
        return None
    path = Path(image_dir) / name
    return str(path) if path.is_file() else None


def build_examples(
    tasks: dict[str, dict],
    *,
    index: dict[int, list[str]],
    sequences: dict[str, list[int]] | None = None,
    items: dict[str, dict] | None = None,
    image_dir: str | Path | None = None,
    enriched: dict[str, dict] | None = None,
    train_items: set[str] | None = None,
    max_history: int = 20,
    max_chars: int = 2000,
    seed: int = 0,
    epoch: int = 0,
) -> list[dict]:
    """Every training example of the task mix as ``{"task", "messages", "answer", "image"}``, for one epoch.

    ``tasks`` maps a task name to ``{"weight": w, "templates": [ids]}``: the task contributes ``round(w * n)``
    examples, ``n`` being its natural count (seqrec: one per position of every user's training part; item tasks:
    one per item that has what the task needs), each with a template drawn at random from ``templates``. Each task
    has its own generator, seeded by ``seed + epoch`` and the task, so adding a task never changes another task's
    examples, and each epoch draws its own subset and templates (as LC-Rec re-samples every epoch: with weight 0.5
    every item gets its alignment examples in some epoch, not a fixed half in all of them). ``mmitemenrich`` uses only
    items in ``train_items`` (``split.json["train"]``) that have an enrichment; without ``enriched`` it is skipped
    with a log line.
    """
    image_dir = Path(image_dir) if image_dir else None
    examples = []
    for t_idx, task in enumerate(TASKS):
        spec = tasks.get(task)
        if not spec or spec.get("weight", 1.0) <= 0:
            continue
        weight = float(spec.get("weight", 1.0))
        templates = list(spec.get("templates") or range(len(TEMPLATES[task])))
        bad = [t for t in templates if not 0 <= t < len(TEMPLATES[task])]
        if bad:
            raise ValueError(f"task {task}: template ids {bad} do not exist (0..{len(TEMPLATES[task]) - 1})")
        rng = random.Random((seed + epoch) * 1000 + t_idx)
        if task == "seqrec":
            if sequences is None:
                raise ValueError("task seqrec needs the interaction sequences")
            pool = [("seqrec", h, t) for h, t in seqrec_pairs(sequences, max_history)]
        else:
            if items is None:
                raise ValueError(f"task {task} needs the item metadata (item.json)")
            ids = sorted(index)
            if task == "mmindex2item":
                ids = [i for i in ids if str(i) in items and items[str(i)].get("title")]
            elif task == "mmitemenrich":
                if not enriched:
                    log.info("task mmitemenrich skipped: no enriched item file given")
                    continue
                allowed = train_items if train_items is not None else set(enriched)
                ids = [i for i in ids if str(i) in enriched and str(i) in allowed]
            ids = [i for i in ids if str(i) in items]
            pool = [(task, i, None) for i in ids]
        chosen = _sample(rng, pool, weight)
        for _, a, b in chosen:
            template = rng.choice(templates)
            if task == "seqrec":
                msgs, answer = task_messages(task, template, history=[sid_string(index[i]) for i in a],
                                             sid=sid_string(index[b]))
                image = None
            else:
                item = items[str(a)]
                image = _image_path(image_dir, item) if task in IMAGE_TASKS else None
                msgs, answer = task_messages(task, template, sid=sid_string(index[a]), item=item,
                                             enriched=(enriched or {}).get(str(a)), with_image=image is not None,
                                             max_chars=max_chars)
            examples.append({"task": task, "template": template, "messages": msgs, "answer": answer, "image": image})
        log.info("task %s: %d examples (weight %.2f of %d, templates %s)", task, len(chosen), weight, len(pool), templates)
    return examples


def render_example(processor, e: dict) -> dict:
    """One example as the collator takes it: chat-template text (the same :func:`render` as evaluation), answer token
    ids, image."""
    prompt, full = render(processor, e["messages"], e["answer"])
    end = getattr(processor, "answer_end", "<|im_end|>")  # a text LM's processor names its own (TextProcessor)
    answer_ids = processor.tokenizer(e["answer"] + end, add_special_tokens=False)["input_ids"]
    return {"text": full, "answer_ids": answer_ids, "image": e["image"], "task": e["task"], "prompt": prompt}


class MultiTaskDataset(Dataset):
    """Rendered examples (:func:`render_example`), all rendered up front."""

    def __init__(self, processor, examples: list[dict]):
        self.rows = [render_example(processor, e) for e in examples]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class EpochMixDataset(Dataset):
    """The task mix re-drawn every epoch: ``build(epoch)`` gives that epoch's examples (same count every epoch, so
    the Trainer's step count holds), rendered when read. :meth:`set_epoch` switches epochs; in training
    ``mmgenrec.finetune.train.EpochMixCallback`` calls it at the start of every epoch, also on resume."""

    def __init__(self, processor, build):
        self.processor, self.build = processor, build
        self.epoch, self.examples = 0, build(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            examples = self.build(epoch)
            if len(examples) != len(self.examples):
                raise ValueError(f"epoch {epoch}: {len(examples)} examples, epoch {self.epoch} had {len(self.examples)}")
            self.epoch, self.examples = epoch, examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return render_example(self.processor, self.examples[i])


@dataclass
class MultimodalCollator:
    """Process a batch with the stock processor (images expanded into their placeholder tokens, padding on ``side``)
    and put labels on the answer tokens only: the last ``len(answer_ids)`` non-padding tokens of each row, checked
    to be exactly the answer's ids. Every processor key (``mm_token_type_ids``, ``pixel_values``,
    ``image_grid_thw``) is kept."""

    processor: object
    side: str = "right"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        images = []
        for r in rows:
            if r["image"]:
                with Image.open(r["image"]) as im:
                    images.append(im.convert("RGB"))
        batch = self.processor(text=[r["text"] for r in rows], images=images or None, padding=True,
                               padding_side=self.side, return_tensors="pt")
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for i, r in enumerate(rows):
            positions = batch["attention_mask"][i].nonzero().squeeze(1)
            answer = positions[-len(r["answer_ids"]):]
            got = batch["input_ids"][i, answer].tolist()
            if got != r["answer_ids"]:
                raise ValueError(f"answer tokens of a {r['task']} example are not a suffix of its prompt+answer "
                                 f"tokens ({got} != {r['answer_ids']}); check the chat template")
            labels[i, answer] = batch["input_ids"][i, answer]
        batch = dict(batch)
        batch["labels"] = labels
        return batch


@dataclass
class TextCollator:
    """A text-only LM's batch (:class:`mmgenrec.models.text_lm.TextProcessor`): the tokenizer pads on ``side`` and
    labels cover every token after the longest common prefix of the row's tokens and its prompt's tokens (the
    answer and its end token; robust to tokenizers that merge across the prompt/answer boundary or add a BOS)."""

    processor: object
    side: str = "right"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if any(r["image"] for r in rows):
            raise ValueError("a text-only model was given an image example")
        tok = self.processor.tokenizer
        batch = tok([r["text"] for r in rows], padding=True, padding_side=self.side, return_tensors="pt")
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for i, r in enumerate(rows):
            positions = batch["attention_mask"][i].nonzero().squeeze(1)
            ids = batch["input_ids"][i, positions].tolist()
            prompt = tok(r["prompt"])["input_ids"]
            k = next((j for j, (a, b) in enumerate(zip(ids, prompt)) if a != b), min(len(ids), len(prompt)))
            if k >= len(ids):
                raise ValueError(f"a {r['task']} example has no answer tokens after its prompt")
            labels[i, positions[k:]] = batch["input_ids"][i, positions[k:]]
        batch = dict(batch)
        batch["labels"] = labels
        return batch
