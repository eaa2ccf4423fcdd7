"""Text generation for the ``mmitemenrich`` task: describe a held-out item (image + text), scored against its
enriched fields.

References are the enriched fields (``results/<cat>/enrich/enriched.json``) of the items listed as ``heldout`` in
``split.json``, rendered by :func:`reference_text`; held-out items never appear in the training task. Systems:

* ``vlm``: a Qwen2.5-VL-style model through its chat template, either finetuned (base + adapter:
  ``load_finetuned``) or the untuned base model (``load_vlm``);
* ``blip2`` / ``instructblip``: ``transformers`` BLIP-2 / InstructBLIP loaded from a local folder
  (``AutoModelForImageTextToText`` + ``AutoProcessor``); a ``Question: ... Answer:`` prompt with the item text,
  a grey placeholder image for items without one (these models need an image).

Decoding is greedy with a GenerationConfig built from scratch (the model's own sampling defaults never leak in).
Metrics (:func:`text_metrics`): corpus BLEU and chrF (sacrebleu, 0-100), mean ROUGE-1/2/L F1 (rouge-score, stemmed,
0-1) and, only when a local encoder folder is configured, BERTScore F1 (greedy cosine matching of the encoder's
last-layer token vectors, no idf, no baseline rescaling; 0-1).

The instruction and the answer format are the finetuning task's own (``mmgenrec.prompts``: ``ENRICH_TEMPLATES``,
``enrich_answer``): one prompt path for training and evaluation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mmgenrec.io import InputError, atomic_path, read_json, write_json
from mmgenrec.data.images import load_item_image
from mmgenrec.prompts import ENRICH_TEMPLATES, ENRICHED_FIELDS, enrich_answer, item_messages, item_text, render

log = logging.getLogger(__name__)

ENRICH_INSTRUCTION = ENRICH_TEMPLATES[0]  # the mmitemenrich task's first template, as in training
SYSTEM_KINDS = ("vlm", "blip2", "instructblip")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items() if _text(v))
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value if _text(v))
    return str(value).strip()


def reference_text(entry: dict) -> str:
    """The answer the enrichment task is trained to give (``mmgenrec.prompts.enrich_answer``): one ``Label: value``
    line per field."""
    return enrich_answer(entry)


def has_reference(entry: dict) -> bool:
    """Whether any enriched field carries text (an all-empty record is no reference)."""
    return any(_text(entry.get(key)) for key in ENRICHED_FIELDS)


def enrich_messages(text: str, with_image: bool) -> list[dict]:
    return item_messages(text, with_image, ENRICH_INSTRUCTION)


# ------------------------------------------------------------------------------------------------------ metrics
def text_metrics(hypotheses: Sequence[str], references: Sequence[str], *, bertscore_model: str | None = None,
                 device: str = "cpu") -> dict[str, float]:
    """Corpus BLEU/chrF (sacrebleu, 0-100), mean ROUGE-1/2/L F1 (0-1), optional BERTScore F1 (0-1)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise ValueError("no references to score against")
    hyps, refs = [str(h) for h in hypotheses], [str(r) for r in references]
    out = {"BLEU": float(sacrebleu.corpus_bleu(hyps, [refs]).score),
           "chrF": float(sacrebleu.corpus_chrf(hyps, [refs]).score)}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]
    for key, name in (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L")):
        out[name] = float(np.mean([s[key].fmeasure for s in scores]))
    if bertscore_model:
        out["BERTScore-F1"] = bertscore_f1(hyps, refs, bertscore_model, device=device)
    out["n"] = len(refs)
    return out


@torch.no_grad()
def bertscore_f1(hypotheses: Sequence[str], references: Sequence[str], model_dir: str | Path, *,
                 device: str = "cpu", batch_size: int = 16) -> float:
    """Mean BERTScore F1 with a local encoder (``AutoModel``): cosine of last-layer token vectors, greedy matching,
    special tokens excluded."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; textgen.bertscore_model must be a local encoder folder")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    enc = AutoModel.from_pretrained(str(model_dir)).to(device).eval()

    def embed(texts):
        out = []
        for s in range(0, len(texts), batch_size):
            b = tok(list(texts[s:s + batch_size]), padding=True, truncation=True, return_tensors="pt",
                    return_special_tokens_mask=True)
            special = b.pop("special_tokens_mask").bool()
            h = enc(**{k: v.to(device) for k, v in b.items()}).last_hidden_state.float().cpu()
            h = torch.nn.functional.normalize(h, dim=-1)
            keep = b["attention_mask"].bool() & ~special
            out += [h[i][keep[i]] for i in range(h.shape[0])]
        return out

    f1 = []
    for h, r in zip(embed(hypotheses), embed(references)):
        if len(h) == 0 or len(r) == 0:
            f1.append(0.0)
            continue
        sim = h @ r.T
        p, rec = sim.max(1).values.mean().item(), sim.max(0).values.mean().item()
        f1.append(0.0 if p + rec <= 0 else 2 * p * rec / (p + rec))
    return float(np.mean(f1))


# --------------------------------------------------------------------------------------------------- generation
def greedy_config(max_new_tokens: int, eos_token_id, pad_token_id):
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, temperature=1.0, top_k=50, top_p=1.0,
        repetition_penalty=1.0, no_repeat_ngram_size=0, min_length=0, length_penalty=1.0,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=True)


class Generator:
    """Loads one system and turns (item text, image or None) batches into generated strings."""

    def __init__(self, kind: str, model_dir: str | Path, *, adapter_dir: str | Path | None = None,
                 device: str = "auto", dtype: str = "auto", max_new_tokens: int = 128):
        from mmgenrec.evaluate.trie import _isolated_generation_config
        from mmgenrec.models.loading import load_finetuned, load_vlm, pick_device, pick_dtype

        if kind not in SYSTEM_KINDS:
            raise ValueError(f"unknown text-generation system kind {kind!r}; expected one of {SYSTEM_KINDS}")
        self.kind, self.max_new_tokens, self._isolated = kind, max_new_tokens, _isolated_generation_config
        if kind == "vlm":
            if adapter_dir is not None:
                self.model, self.processor, _ = load_finetuned(model_dir, adapter_dir, device=device, dtype=dtype)
            else:
                self.model, self.processor = load_vlm(model_dir, device=device, dtype=dtype)
        else:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            if not (Path(model_dir) / "config.json").is_file():
                raise FileNotFoundError(f"{model_dir}: no config.json; expected a local {kind} model folder")
            dev = pick_device(device)
            self.model = AutoModelForImageTextToText.from_pretrained(
                str(model_dir), dtype=pick_dtype(dtype, dev)).to(dev).eval()
            self.processor = AutoProcessor.from_pretrained(str(model_dir))
        self.tok = self.processor.tokenizer
        self.tok.padding_side = "left"
        eos = self.tok.convert_tokens_to_ids("<|im_end|>") if kind == "vlm" else None
        eos = eos if eos is not None and eos != self.tok.unk_token_id else self.tok.eos_token_id
        self.config = greedy_config(max_new_tokens, eos, self.tok.pad_token_id)

    @torch.no_grad()
    def __call__(self, texts: list[str], images: list[Image.Image | None]) -> list[str]:
        if self.kind == "vlm":
            prompts = [render(self.processor, enrich_messages(t, im is not None))[0] for t, im in zip(texts, images)]
            imgs = [im for im in images if im is not None]
            batch = self.processor(text=prompts, images=imgs or None, padding=True, return_tensors="pt")
        else:
            size = self.processor.image_processor.size
            grey = Image.new("RGB", (size.get("width", 224), size.get("height", 224)), (128, 128, 128))
            prompts = [f"Question: {ENRICH_INSTRUCTION} Product: {t} Answer:" for t in texts]
            batch = self.processor(images=[im or grey for im in images], text=prompts, padding=True,
                                   return_tensors="pt")
        batch = batch.to(self.model.device)
        with self._isolated(self.model):
            out = self.model.generate(**dict(batch), generation_config=self.config)
        new = out[:, batch["input_ids"].shape[1]:] if out.shape[1] > batch["input_ids"].shape[1] else out[:, :0]
        return [s.strip() for s in self.tok.batch_decode(new, skip_special_tokens=True)]


def heldout_items(enriched_json, split_json, items: dict) -> list[str]:
    """Held-out item ids (as strings) that have an enriched entry with at least one field, in split order."""
    enriched, split = read_json(enriched_json), read_json(split_json)
    if not isinstance(split, dict) or not isinstance(split.get("heldout"), list):
        raise InputError(f"{split_json}: expected {{\"train\": [...], \"heldout\": [...]}}")
    out, missing = [], []
    for pos, raw in enumerate(split["heldout"]):
        item = str(raw)
        if item not in items:
            raise InputError(f"{split_json}: heldout[{pos}]: item {item} is not in the prepared item file")
        entry = enriched.get(item)
        if entry is None:
            missing.append(item)
            continue
        if not isinstance(entry, dict):
            raise InputError(f"{enriched_json}: item {item}: expected an object of enriched fields")
        if has_reference(entry):
            out.append(item)
    if missing:
        log.warning("%d held-out items have no enriched entry and are skipped (e.g. %s)", len(missing), missing[:5])
    return out


def evaluate_textgen(
    kind: str,
    model_dir: str | Path,
    item_json: str | Path,
    image_dir: str | Path | None,
    enriched_json: str | Path,
    split_json: str | Path,
    metrics_path: str | Path,
    generations_path: str | Path,
    *,
    system: str,
    adapter_dir: str | Path | None = None,
    max_items: int | None = None,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    max_text_chars: int = 1000,
    use_images: bool = True,
    bertscore_model: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> dict:
    """Generate a description of every held-out enriched item (up to ``max_items``) and score it."""
    t0 = time.time()
    items = read_json(item_json)
    ids = heldout_items(enriched_json, split_json, items)[:max_items]
    if not ids:
        raise InputError(f"{split_json}: no held-out item with enriched fields in {enriched_json}")
    enriched = read_json(enriched_json)
    refs = [reference_text(enriched[i]) for i in ids]
    image_dir = Path(image_dir) if image_dir and use_images else None
    gen = Generator(kind, model_dir, adapter_dir=adapter_dir, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
    hyps = []
    for s in tqdm(range(0, len(ids), batch_size), desc=f"textgen {system}", unit="batch"):
        chunk = ids[s:s + batch_size]
        texts = [item_text(items[i], max_chars=max_text_chars) for i in chunk]  # raw item text, never the enrichment
        hyps += gen(texts, [load_item_image(image_dir, items[i].get("image"), i) for i in chunk])
    metrics = text_metrics(hyps, refs, bertscore_model=bertscore_model)
    with atomic_path(generations_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, h, r in zip(ids, hyps, refs):
            f.write(json.dumps({"item": i, "generation": h, "reference": r}, ensure_ascii=False) + "\n")
    result = {**metrics, "system": system, "kind": kind, "max_new_tokens": max_new_tokens,
              "items_with_image": sum(bool(items[i].get("image")) for i in ids) if image_dir else 0,
              "seconds": round(time.time() - t0, 2)}
    write_json(metrics_path, result)
    log.info("%s: %s", system, {k: round(v, 4) for k, v in metrics.items()})
    return result
