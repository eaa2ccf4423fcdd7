"""Shared by the VLM methods that read item images in the history (kinds ``unimp`` and ``vlm_candidates``).

* :func:`item_fields`: an item's fields as UniMP writes them (``Category .. Price .. Brand .. Title ..``, each
  field cut to 20 words, ``Unknown`` when empty);
* :class:`HistoryCollator`: rows with SEVERAL images each (flattened in prompt order for the stock processor),
  labels on the answer tokens only, a per-example loss weight;
* :func:`weighted_focal_loss` and :class:`FocalTrainer` (stock ``Trainer`` with a ``compute_loss``);
* :func:`prepare_lora_vlm`: base VLM + optional new tokens (trainable rows only) + LoRA on the language model;
* :class:`ValidSelection`: evaluates the valid split at every epoch end, keeps the best trainable state on disk
  (model selection on valid only; resumable with the Trainer's epoch checkpoints);
* :func:`rank_prompts`: batches of (prompt, images) -> the ONE constrained decoder (:func:`generate_topk`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback

from mmgenrec.data.images import load_item_image
from mmgenrec.evaluate.trie import ItemTrie, generate_topk
from mmgenrec.io import write_json

log = logging.getLogger(__name__)

IGNORE = -100
EOS = "<|im_end|>"
FIELD_WORDS = 20  # UniMP's extract_meta: " ".join(field.split()[:20])


def _words(value, n: int = FIELD_WORDS) -> str:
    text = " ".join(str(value or "").split()[:n])
    return text or "Unknown"


def item_fields(item: dict, max_words: int = FIELD_WORDS) -> str:
    """``Category {c} Price {p} Brand {b} Title {t}`` (UniMP's item text; our prepared items have no price, so it
    reads ``Unknown`` unless the record has one)."""
    return (f"Category {_words(item.get('categories'), max_words)} Price {_words(item.get('price'), max_words)} "
            f"Brand {_words(item.get('brand'), max_words)} Title {_words(item.get('title'), max_words)}")


def image_path(image_dir: str | Path | None, item: dict | None) -> str | None:
    """The item's prepared image file, or None when it has none."""
    if image_dir is None or not item or not item.get("image"):
        return None
    path = Path(image_dir) / item["image"]
    return str(path) if path.is_file() else None


def render_prompt(processor, messages: list[dict], answer: str | None = None) -> str:
    """Chat-template text (generation prompt); with ``answer``, the answer and its end-of-turn appended."""
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt if answer is None else prompt + answer + EOS


def _load_images(paths: Sequence[str]) -> list[Image.Image]:
    out = []
    for p in paths:
        im = load_item_image(Path(p).parent, Path(p).name, item=Path(p).stem)
        if im is None:
            raise ValueError(f"{p}: image listed in a prompt is unreadable")
        out.append(im)
    return out


@dataclass
class HistoryCollator:
    """``rows``: dicts with ``text`` (prompt + answer + end-of-turn), ``images`` (paths, in prompt order),
    ``answer_ids`` and ``weight``. The processor expands every image placeholder; labels cover the answer only,
    checked to be exactly the answer's ids; ``loss_weight`` carries each example's task weight."""

    processor: object
    side: str = "right"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        images = [im for r in rows for im in _load_images(r["images"])]
        batch = dict(self.processor(text=[r["text"] for r in rows], images=images or None, padding=True,
                                    padding_side=self.side, return_tensors="pt"))
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for i, r in enumerate(rows):
            pos = batch["attention_mask"][i].nonzero().squeeze(1)[-len(r["answer_ids"]):]
            got = batch["input_ids"][i, pos].tolist()
            if got != list(r["answer_ids"]):
                raise ValueError(f"answer tokens {got} are not the suffix {r['answer_ids']} of the prompt")
            labels[i, pos] = batch["input_ids"][i, pos]
        batch["labels"] = labels
        batch["loss_weight"] = torch.tensor([float(r.get("weight", 1.0)) for r in rows])
        return batch


def weighted_focal_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                        gamma: float = 2.0) -> torch.Tensor:
    """Focal loss on the next-token predictions: ``-(1 - p_t)^gamma log p_t`` per answer token (logits at
    position ``j`` predict the label at ``j + 1``), times the example's weight, summed and divided by the number
    of answer tokens. ``gamma = 0`` and unit weights give the plain token-mean cross-entropy."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE
    logp = torch.log_softmax(shift_logits, -1)
    tok_logp = logp.gather(-1, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    focal = -((1 - tok_logp.exp()) ** gamma) * tok_logp
    w = weights.to(focal.device).unsqueeze(1).expand_as(focal)
    return (focal * w * mask).sum() / mask.sum().clamp(min=1)


class FocalTrainer(Trainer):
    """The stock Trainer with UniMP's loss: focal re-weighting (``gamma``) and per-example task weights."""

    def __init__(self, *args, gamma: float = 2.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gamma = float(gamma)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        weights = inputs.pop("loss_weight")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_focal_loss(outputs.logits, labels, weights, self.gamma)
        return (loss, outputs) if return_outputs else loss


def prepare_lora_vlm(model_dir, new_tokens: Sequence[str], *, r: int, alpha: int, dropout: float,
                     device: str = "auto", dtype: str = "auto", seed: int = 0):
    """Base VLM, ``new_tokens`` added (embeddings resized to exactly ``len(tokenizer)``; only their rows train,
    through peft ``trainable_token_indices``), LoRA on the language model's projections only."""
    from peft import LoraConfig, get_peft_model

    from mmgenrec.models.item_tokens import LORA_TARGET_REGEX, add_item_tokens, resize_and_init, tied
    from mmgenrec.models.loading import load_vlm

    model, processor = load_vlm(model_dir, device=device, dtype=dtype)
    extra = {}
    if new_tokens:
        n_base, new_ids = add_item_tokens(processor.tokenizer, list(new_tokens))
        resize_and_init(model, processor.tokenizer, n_base, seed=seed)
        extra["trainable_token_indices"] = (list(new_ids) if tied(model)
                                            else {"embed_tokens": list(new_ids), "lm_head": list(new_ids)})
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_REGEX,
                        task_type="CAUSAL_LM", **extra)
    return get_peft_model(model, config), processor


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def fresh_checkpoints(checkpoint_dir: str | Path, settings: dict, files: Sequence) -> Path:
    """Keep ``checkpoint_dir`` only when it was written for the same settings and input files."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        if f and Path(f).is_file():
            h.update(Path(f).read_bytes())
    stamp, d = Path(checkpoint_dir) / "run.json", Path(checkpoint_dir)
    if d.exists() and (not stamp.is_file() or json.loads(stamp.read_text()).get("fingerprint") != h.hexdigest()):
        log.info("checkpoints in %s are from other settings or inputs; starting afresh", d)
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"fingerprint": h.hexdigest()})
    return d


class ValidSelection(TrainerCallback):
    """At every epoch end: ``score_fn(model)`` on the valid split; the best epoch's trainable tensors go to
    ``<dir>/best.pt`` and its record (epoch, score, curve) to ``<dir>/best.json``, both read back on resume."""

    def __init__(self, directory: str | Path, score_fn: Callable[[object], float], metric: str):
        self.dir, self.score_fn, self.metric = Path(directory), score_fn, metric
        rec = self.dir / "best.json"
        self.record = json.loads(rec.read_text()) if rec.is_file() else {"epoch": None, "score": None, "curve": []}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        was_training = model.training
        model.eval()
        score = float(self.score_fn(model))
        if was_training:
            model.train()
        epoch = int(round(state.epoch or 0))
        self.record["curve"] = [c for c in self.record["curve"] if c["epoch"] != epoch] + [
            {"epoch": epoch, self.metric: score}]
        if self.record["score"] is None or score > self.record["score"]:
            torch.save(trainable_state(model), self.dir / "best.pt")
            self.record.update(epoch=epoch, score=score)
        write_json(self.dir / "best.json", self.record)
        log.info("epoch %d: valid %s %.4f (best %.4f at epoch %s)", epoch, self.metric, score, self.record["score"],
                 self.record["epoch"])

    def restore_best(self, model) -> None:
        path = self.dir / "best.pt"
        if path.is_file():
            missing = model.load_state_dict(torch.load(path), strict=False)
            if missing.unexpected_keys:
                raise RuntimeError(f"{path}: unexpected tensors {missing.unexpected_keys[:3]}")


@torch.no_grad()
def rank_prompts(model, processor, prompts: Sequence[tuple[str, list[str]]], trie: ItemTrie, *, num_beams: int,
                 top_k: int, batch_size: int, desc: str = "rank") -> tuple[list[list[int]], int]:
    """(prompt text, image paths) per example -> the trie entries ranked by constrained beam search (left padding);
    returns the ranked lists and the number of invalid beams."""
    ranked, invalid = [], 0
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        chunk = prompts[start:start + batch_size]
        images = [im for _, paths in chunk for im in _load_images(paths)]
        batch = processor(text=[t for t, _ in chunk], images=images or None, padding=True, padding_side="left",
                          return_tensors="pt").to(device)
        lists, _, bad = generate_topk(model, dict(batch), trie, num_beams=num_beams, top_k=top_k,
                                      prompt_len=batch["input_ids"].shape[1], return_scores=False)
        ranked += lists
        invalid += bad
    return ranked, invalid


def token_trie(tokenizer, tokens: Sequence[str]) -> ItemTrie:
    """A one-level trie: each entry is one (single-token) string of ``tokens``, answered then closed by EOS."""
    vocab = tokenizer.get_vocab()
    seqs = []
    for t in tokens:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{t!r} is {len(ids)} tokens for this tokenizer; a one-level trie needs one")
        seqs.append(ids)
    return ItemTrie(seqs, eos_token_id=vocab[EOS], pad_token_id=tokenizer.pad_token_id)

