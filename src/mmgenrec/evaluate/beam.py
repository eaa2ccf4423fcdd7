"""Trie-constrained beam search over item IDs: one prefill per prompt, beams over the trie's allowed tokens only.

HF ``generate(num_beams=nb)`` copies every prompt ``nb`` times before the first forward pass (so a prompt is
encoded ``nb`` times) and, at every step, runs ``log_softmax``, adds the beam scores and takes a ``topk`` over
``nb x vocab`` candidates. :func:`trie_beam_search` computes the same beams with far less work:

1. **prefill once**: the prompt batch ``[B, P]`` runs once (``logits_to_keep=1``: only the last position's logits);
   the first ID level is chosen from these ``B`` rows, and only then is the KV cache repeated to the ``B x nb``
   beams (T5: the encoder runs once, the first decoder step on ``B`` rows, then the self- and cross-attention
   caches and the encoder states are repeated);
2. per level ``g = 0 .. L-1``: the trie gives each beam its allowed tokens as one ``[rows, width]`` block (CSR
   gather, padding slots masked); the candidates' scores are ``beam score + logit[token] - logsumexp(logits)``,
   i.e. exactly HF's ``log_softmax`` over the full vocabulary, gathered at the allowed tokens only (the
   full-vocabulary ``logsumexp`` is the only full-width work left); one ``topk`` over ``nb x width`` candidates
   per user picks the next beams, and the cache rows follow them (``reorder_cache``);
3. the final step scores EOS after the ``L`` item tokens (the only allowed token there) as HF does, and divides by
   ``(L + 1) ** length_penalty`` (HF's finished-beam score; ``generate_topk`` uses 0.0, i.e. the plain sum).

Same beams as HF beam search with :class:`~mmgenrec.evaluate.trie.TrieLogitsProcessor`: HF's running beams are the
best ``nb`` unfinished candidates and no beam can finish before the EOS step, so every step keeps the same set; the
``-1e9`` copies HF starts with (all beams but the first) only fill slots when fewer than ``nb`` prefixes exist, and
those slots are returned here as missing (score ``-inf``) instead of duplicates/placeholders. Ties between equal
scores may be broken differently (``topk`` order), which can swap items of equal score.

Positions follow HF: decoder-only models get ``position_ids`` from ``_prepare_position_ids_for_generation`` (HF's
own helper: ``cumsum(attention_mask) - 1`` with left padding; Qwen2.5-VL's 3D M-RoPE positions + ``rope_deltas``),
then ``+1`` per generated token. No Python loop over beams or allowed tokens: a loop over the ``L + 1`` steps only.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput

from mmgenrec.evaluate.trie import ItemTrie

log = logging.getLogger(__name__)

__all__ = ["BeamResult", "topk_items", "trie_beam_search"]


@dataclass
class BeamResult:
    """``tokens[b, k]``: the ``L`` item tokens of user ``b``'s ``k``-th best beam; ``scores[b, k]``: its sequence
    score (HF's ``sequences_scores``), best first; ``-inf`` marks a slot without a beam (fewer items than beams)."""

    tokens: torch.Tensor  # [B, num_beams, L] int64
    scores: torch.Tensor  # [B, num_beams] float32


def _accepts(module, name: str) -> bool:
    return name in inspect.signature(module.forward).parameters


def _last_logits(out) -> torch.Tensor:
    return out.logits[:, -1, :].to(dtype=torch.float32)


class _DecoderOnly:
    """Qwen2 / LLaMA / Qwen2.5-VL: prefill the left-padded prompts once, then one token per beam per step."""

    def __init__(self, model, batch: dict):
        self.model = model
        inputs = dict(batch)
        ids = inputs["input_ids"]
        if inputs.get("attention_mask") is None:
            inputs["attention_mask"] = torch.ones_like(ids)
        self.mask = inputs["attention_mask"]
        positions = inputs.pop("position_ids", None)
        if positions is None:
            prepare = getattr(model, "_prepare_position_ids_for_generation", None)
            if prepare is not None:  # HF's own (per model: Qwen2.5-VL also sets its rope_deltas)
                positions = prepare(ids, dict(inputs))
            else:
                positions = (self.mask.long().cumsum(-1) - 1).masked_fill(self.mask == 0, 0)
        extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
        out = model(**inputs, position_ids=positions, use_cache=True, return_dict=True, **extra)
        self.cache = out.past_key_values
        self.first_logits = _last_logits(out)
        self.position = positions[..., -1:]  # [B, 1] or [rows, B, 1] (M-RoPE)

    def expand(self, num_beams: int) -> None:
        self.cache.batch_repeat_interleave(num_beams)
        self.mask = self.mask.repeat_interleave(num_beams, dim=0)
        self.position = self.position.repeat_interleave(num_beams, dim=self.position.ndim - 2)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per beam ([rows, 1]); positions and mask are the same for all beams of a user."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.position = self.position + 1
        out = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=self.position,
                         past_key_values=self.cache, use_cache=True, return_dict=True)
        self.cache = out.past_key_values
        return _last_logits(out)


class _EncoderDecoder:
    """T5: the encoder once, the first decoder step (decoder start token) on ``B`` rows, then the beams."""

    def __init__(self, model, batch: dict, decoder_start_token_id: int):
        if "decoder_input_ids" in batch:
            raise ValueError("trie_beam_search starts the decoder from decoder_start_token_id; a batch with "
                             "decoder_input_ids needs backend='hf'")
        self.model = model
        self.mask = batch.get("attention_mask")
        enc_inputs = {k: batch[k] for k in ("input_ids", "inputs_embeds") if batch.get(k) is not None}
        self.encoder_outputs = model.get_encoder()(**enc_inputs, attention_mask=self.mask, return_dict=True)
        n = self.encoder_outputs.last_hidden_state.shape[0]
        device = self.encoder_outputs.last_hidden_state.device
        start = torch.full((n, 1), int(decoder_start_token_id), dtype=torch.long, device=device)
        out = model(encoder_outputs=self.encoder_outputs, attention_mask=self.mask, decoder_input_ids=start,
                    use_cache=True, return_dict=True)
        self.cache = out.past_key_values
        self.first_logits = _last_logits(out)

    def expand(self, num_beams: int) -> None:
        self.cache.batch_repeat_interleave(num_beams)
        self.encoder_outputs = BaseModelOutput(
            last_hidden_state=self.encoder_outputs.last_hidden_state.repeat_interleave(num_beams, dim=0))
        if self.mask is not None:
            self.mask = self.mask.repeat_interleave(num_beams, dim=0)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(encoder_outputs=self.encoder_outputs, attention_mask=self.mask, decoder_input_ids=tokens,
                         past_key_values=self.cache, use_cache=True, return_dict=True)
        self.cache = out.past_key_values
        return _last_logits(out)


@torch.no_grad()  # not inference_mode: Qwen2.5-VL keeps rope_deltas on the module for later (training) forwards
def trie_beam_search(model, batch: dict, trie: ItemTrie, *, num_beams: int, length_penalty: float = 0.0,
                     decoder_start_token_id: int | None = None) -> BeamResult:
    """Beam search over the items of ``trie`` (``L`` tokens + EOS), every prompt's prefill run once.

    ``model`` is a transformers model (decoder-only or encoder-decoder; unwrap a peft model first);
    ``batch`` its inputs (``input_ids``, ``attention_mask`` with LEFT padding for decoder-only models, plus e.g.
    ``pixel_values``/``image_grid_thw``/``mm_token_type_ids``). Encoder-decoder models need
    ``decoder_start_token_id``. Returns the beams best first (see :class:`BeamResult`).
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if getattr(model.config, "is_encoder_decoder", False):
        if decoder_start_token_id is None:
            raise ValueError("an encoder-decoder model needs decoder_start_token_id")
        run = _EncoderDecoder(model, batch, decoder_start_token_id)
    else:
        run = _DecoderOnly(model, batch)
    logits = run.first_logits  # [B, V]
    n_users, vocab = logits.shape
    if trie.max_token_id >= vocab:
        raise ValueError(f"trie token id {trie.max_token_id} outside the vocabulary of {vocab}")
    device = logits.device
    depth = trie.depth
    neg_inf = torch.tensor(-float("inf"), device=device)
    user_offset = torch.arange(n_users, device=device).unsqueeze(1) * num_beams  # [B, 1]
    generated = torch.zeros(n_users, 1, 0, dtype=torch.long, device=device)  # [B, beams so far, g]
    scores = torch.zeros(n_users, 1, device=device)

    for g in range(depth):
        n_prev = generated.shape[1]
        rows = generated.reshape(n_users * n_prev, g)
        tokens, real = (t.to(device) for t in trie.allowed_block(rows.to(trie.device)))  # [rows, W]
        width = tokens.shape[1]
        log_probs = logits.gather(1, tokens) - torch.logsumexp(logits, dim=-1, keepdim=True)
        cand = torch.where(real, scores.reshape(-1, 1) + log_probs, neg_inf).reshape(n_users, n_prev * width)
        k = min(num_beams, n_prev * width)
        top, pick = cand.topk(k, dim=1)  # sorted, best first
        if k < num_beams:  # fewer candidates than beams (only possible at the first level): empty slots
            top = torch.cat([top, top.new_full((n_users, num_beams - k), -float("inf"))], dim=1)
            pick = torch.cat([pick, pick[:, -1:].expand(n_users, num_beams - k)], dim=1)
        source = pick // width  # beam each new beam extends, [B, num_beams]
        new_tokens = tokens.reshape(n_users, n_prev * width).gather(1, pick)
        generated = torch.cat([generated.gather(1, source.unsqueeze(2).expand(-1, -1, g)),
                               new_tokens.unsqueeze(2)], dim=2)
        scores = top
        if g == 0:
            run.expand(num_beams)  # every beam extends the user's single prompt row
        else:
            run.cache.reorder_cache((user_offset + source).reshape(-1))
        logits = run.step(new_tokens.reshape(-1, 1))  # [B * num_beams, V]

    eos_log_probs = logits[:, trie.eos_token_id] - torch.logsumexp(logits, dim=-1)
    final = (scores + eos_log_probs.reshape(n_users, num_beams)) / float(depth + 1) ** length_penalty
    final, order = final.sort(dim=1, descending=True, stable=True)
    tokens = generated.gather(1, order.unsqueeze(2).expand(-1, -1, depth))
    return BeamResult(tokens=tokens, scores=final)


def topk_items(model, batch: dict, trie: ItemTrie, *, num_beams: int, top_k: int, return_scores: bool = True,
               decoder_start_token_id: int | None = None) -> tuple[list[list[int]], list[list[float]], int]:
    """:func:`~mmgenrec.evaluate.trie.generate_topk`'s result, ``(ranked, scores, n_invalid)``, from
    :func:`trie_beam_search`: per user the ``top_k`` best items (trie indices) and their scores; every beam is an
    item, so ``n_invalid`` is 0 (a slot without a beam, when fewer items than beams exist, is not returned)."""
    result = trie_beam_search(model, batch, trie, num_beams=num_beams, length_penalty=0.0,
                              decoder_start_token_id=decoder_start_token_id)
    rows = result.tokens.cpu().tolist()
    exists = torch.isfinite(result.scores).cpu().tolist()
    beam_scores = result.scores.cpu().tolist()
    ranked, scores = [], []
    for b, (user_rows, user_exists) in enumerate(zip(rows, exists)):
        items = [trie.item_of(r) for r, ok in zip(user_rows, user_exists) if ok][:top_k]
        if len(items) < top_k:
            log.warning("example %d: only %d distinct valid items among %d beams (top_k=%d)", b, len(items),
                        num_beams, top_k)
        ranked.append(items)
        scores.append(beam_scores[b][:len(items)] if return_scores else [])
    return ranked, scores, 0
