"""The LLM machinery the rankers share: a causal LM + LoRA from a local folder, the answer-token logits at the last
prompt position (verbalizer), optional embedding slots filled through ``inputs_embeds`` (CoLLM), and an epoch loop
with valid-split selection, per-epoch checkpoints and resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmgenrec.io import InputError, atomic_path

log = logging.getLogger(__name__)


def load_lm(path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` from a local folder (left padding: the answer position is the
    last column of every row)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmgenrec.models.loading import pick_device, pick_dtype

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a local causal LM folder (AutoModelForCausalLM)")
    dev = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=pick_dtype(dtype, dev)).to(dev)
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    tok.padding_side = "left"
    return model, tok


def add_lora(model, cfg, adapter_dir: str | Path | None = None, trainable: bool = True):
    """LoRA on the attention projections (LlamaRec / TALLRec: q_proj, v_proj), new or loaded from a folder."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    lora = LoraConfig(r=cfg.get("lora_r", 8), lora_alpha=cfg.get("lora_alpha", 16),
                      lora_dropout=cfg.get("lora_dropout", 0.05),
                      target_modules=list(cfg.get("lora_target_modules", ["q_proj", "v_proj"])), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def answer_token_ids(tok, prompt_end: str, answers: Sequence[str]) -> list[int]:
    """The first token of each answer string right after ``prompt_end`` (as the tokenizer splits it in context):
    the verbalizer reads one position, so the answers' first tokens must differ (an error otherwise)."""
    base = tok(prompt_end, add_special_tokens=False)["input_ids"]
    out = []
    for ans in answers:
        ids = tok(prompt_end + ans, add_special_tokens=False)["input_ids"]
        if ids[:len(base)] != base or len(ids) <= len(base):
            raise InputError(f"answer {ans!r} does not start a new token after {prompt_end!r} for this tokenizer")
        out.append(ids[len(base)])
    if len(set(out)) != len(out):
        raise InputError(f"answers {list(answers)} start with the same token; the verbalizer cannot tell them apart")
    return out


def encode(tok, text: str, slots: Sequence[str] = ()) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text``; every occurrence of a slot marker becomes one placeholder position, returned as
    ``(position, slot index)`` (its embedding is supplied at forward time)."""
    pieces, marks = [text], []
    for s_idx, marker in enumerate(slots):
        new = []
        for p in pieces:
            if isinstance(p, int):
                new.append(p)
                continue
            parts = p.split(marker)
            for j, part in enumerate(parts):
                if j:
                    new.append(s_idx)
                new.append(part)
        pieces = new
    ids: list[int] = []
    first = True
    for p in pieces:
        if isinstance(p, int):
            marks.append((len(ids), p))
            ids.append(tok.pad_token_id)
        elif p:
            ids += tok(p, add_special_tokens=first)["input_ids"]
            first = False
    return ids, marks


def last_logits(model, tok, encoded: Sequence[tuple[list[int], list]], answer_ids: Sequence[int],
                slot_vectors: Callable[[int, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Logits of ``answer_ids`` at the last position of every (left-padded) prompt: shape ``(n, len(answer_ids))``.

    ``slot_vectors(row, slot)`` gives the embedding of a placeholder position (CoLLM); gradients flow through it.
    """
    n, width = len(encoded), max(len(ids) for ids, _ in encoded)
    dev = next(model.parameters()).device
    input_ids = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, (ids, _) in enumerate(encoded):
        input_ids[r, width - len(ids):] = torch.tensor(ids)
        mask[r, width - len(ids):] = 1
    input_ids, mask = input_ids.to(dev), mask.to(dev)
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    kwargs = dict(attention_mask=mask, position_ids=position_ids)
    if slot_vectors is not None and any(marks for _, marks in encoded):
        embeds = model.get_input_embeddings()(input_ids)
        rows, cols, vecs = [], [], []
        for r, (ids, marks) in enumerate(encoded):
            for pos, slot in marks:
                rows.append(r)
                cols.append(width - len(ids) + pos)
                vecs.append(slot_vectors(r, slot))
        embeds = embeds.index_put((torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)),
                                  torch.stack(vecs).to(embeds.dtype))
        kwargs["inputs_embeds"] = embeds
    else:
        kwargs["input_ids"] = input_ids
    out = model(**kwargs, logits_to_keep=1)
    return out.logits[:, -1, :][:, list(answer_ids)].float()


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fit(params: Sequence[torch.nn.Parameter], named_state: Callable[[], dict], load_state: Callable[[dict], None],
        n_samples: int, batch_loss: Callable[[list[int]], torch.Tensor], select: Callable[[], float], *,
        epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int, checkpoint_dir: str | Path | None,
        key: dict, desc: str, stop_after: int | None = None) -> dict:
    """Train ``params`` for ``epochs`` (AdamW), scoring ``select()`` (higher is better, on the valid split) after
    every epoch and keeping the best epoch's state, which is loaded at the end.

    The sample order of epoch ``e`` is drawn from ``(seed, e)``; the state after every epoch is checkpointed
    (``checkpoint_dir/last.pt``, with ``key``'s fingerprint): a rerun resumes after the last finished epoch and
    ends exactly where an uninterrupted run does. ``stop_after`` stops after that many epochs (tests: a kill).
    """
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)
    start, history, best = 0, [], {"score": float("-inf"), "epoch": -1, "state": None}
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    fp = fingerprint(key)
    if ckpt is not None and ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") == fp:
            load_state(saved["state"])
            opt.load_state_dict(saved["optim"])
            start, history, best = saved["epoch"] + 1, saved["history"], saved["best"]
            log.info("%s: resumed after epoch %d from %s", desc, saved["epoch"], ckpt)
        else:
            log.info("%s: checkpoint %s is from other settings; starting over", desc, ckpt)
    for epoch in range(start, epochs):
        if stop_after is not None and epoch >= stop_after:
            return {"stopped": epoch, "history": history}
        torch.manual_seed(seed * 1000 + epoch)
        order = list(range(n_samples))
        random.Random(f"{seed}|epoch{epoch}").shuffle(order)
        total, steps = 0.0, 0
        for s in tqdm(range(0, n_samples, batch_size), desc=f"{desc} epoch {epoch + 1}/{epochs}", unit="batch"):
            loss = batch_loss(order[s:s + batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        score = float(select())
        history.append({"epoch": epoch, "loss": total / max(steps, 1), "valid": score})
        log.info("%s epoch %d: loss %.4f valid %.4f", desc, epoch, total / max(steps, 1), score)
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, "state": {k: v.detach().clone() for k, v in named_state().items()}}
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt, suffix=".pt") as tmp:
                torch.save({"fingerprint": fp, "epoch": epoch, "state": named_state(), "optim": opt.state_dict(),
                            "history": history, "best": best}, tmp)
    if best["state"] is not None:
        load_state(best["state"])
    return {"history": history, "best_epoch": best["epoch"], "best_valid": best["score"]}


def trainable_state(module) -> tuple[list[torch.nn.Parameter], Callable[[], dict], Callable[[dict], None]]:
    """(trainable parameters, a snapshot function, a restore function) of a module."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    params = dict(module.named_parameters())

    def state():
        return {n: params[n].detach().cpu().clone() for n in names}

    def load(sd):
        with torch.no_grad():
            for n in names:
                params[n].copy_(sd[n].to(params[n].device))

    return [params[n] for n in names], state, load
