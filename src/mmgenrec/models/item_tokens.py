"""Item tokens (``<a_0>``..``<d_255>``) added to a VLM: the exact same steps at training and at loading time.

The embedding matrix is resized to exactly ``len(tokenizer)`` (never padded: padding rows would be randomly
initialised and not saved by the adapter). Every new row is initialised explicitly, including the "spare" rows
that the real checkpoint already has beyond its tokenizer (152064 rows for 151665 tokens), which
``resize_token_embeddings`` would leave untouched.
"""

from __future__ import annotations

import re

import torch

LORA_TARGET_REGEX = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)  # the vision tower also has gate/up/down_proj; LoRA stays on the language model
# a text-only causal LM (LLaMA / Qwen2 family: model.layers.N....): the same projections
LM_LORA_TARGET_REGEX = (
    r"(.*\.)?model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)


def add_item_tokens(tokenizer, tokens: list[str]) -> tuple[int, list[int]]:
    """Add ``tokens`` as normal added tokens; return ``(n_base_tokens, new_token_ids)``."""
    n_base = len(tokenizer)
    tokenizer.add_tokens(list(tokens))
    new_ids = tokenizer.convert_tokens_to_ids(list(tokens))
    if sorted(new_ids) != list(range(n_base, n_base + len(tokens))):
        raise ValueError("item tokens must be new to the tokenizer (some already exist)")
    return n_base, new_ids


@torch.no_grad()
def resize_and_init(model, tokenizer, n_base: int, seed: int = 0) -> None:
    """Resize to exactly ``len(tokenizer)`` and set rows ``n_base:`` to the base-row mean plus small noise."""
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != mats[0].data_ptr():
        mats.append(out.weight)
    for w in mats:
        base = w[:n_base].float()
        noise = torch.randn(len(tokenizer) - n_base, w.shape[1], generator=gen) * base.std(0, keepdim=True)
        w[n_base:] = (base.mean(0, keepdim=True) + noise).to(w.dtype)


def tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


ITEM_TOKEN = re.compile(r"<([A-Za-z])_(\d+)>")


def item_vocabulary(index: dict, codebook_size: int | None = None, base_tokens: list[str] | None = None) -> list[str]:
    """The item tokens to add, derived from the index itself: ``<letter_code>`` for every level the index uses
    (its letters as the index spells them: ``a..d``, ``a..e`` with a suffix level, ``a..dA..D`` for MQL4Rec) and
    every code below ``codebook_size``, in level-major order; then any token of the index outside that grid (e.g.
    a suffix code beyond the codebook); ``base_tokens`` first when given (so a caller's fixed vocabulary keeps its
    ids)."""
    tokens = list(base_tokens or [])
    seen = set(tokens)
    longest = max(index.values(), key=len, default=[])
    letters = [m.group(1) if (m := ITEM_TOKEN.fullmatch(t)) else None for t in longest]
    if None in letters:
        raise ValueError(f"not an item token layout: {longest}")
    for letter in letters if codebook_size else []:
        for code in range(codebook_size):
            tok = f"<{letter}_{code}>"
            if tok not in seen:
                seen.add(tok)
                tokens.append(tok)

    def order(tok: str) -> tuple:
        m = ITEM_TOKEN.fullmatch(tok)
        return (letters.index(m.group(1)) if m and m.group(1) in letters else len(letters),
                int(m.group(2)) if m else 0, tok)

    return tokens + sorted({t for v in index.values() for t in v} - seen, key=order)
