"""The networks of the sequential ID baselines: SASRec, BERT4Rec, GRU4Rec, LRURec (written from the papers).

Every net maps a left-padded token matrix ``(B, W)`` (0 = padding, item ``i`` = token ``i + 1``, BERT4Rec's
``[mask]`` = ``n_items + 1``) to hidden states ``(B, W, d)``; :meth:`SeqNet.scores` turns hidden states into one
logit per real item (the item embedding table is tied to the output, as in the four papers' reference setups).
Positions are counted from the right end of a ``max_len`` window, so a batch trimmed to its longest row gives
every row the same result as the full window (no batch-dependence).

* SASRec (Kang & McAuley, ICDM 2018): causal self-attention, learned positions, pointwise FFN of width ``d``.
* BERT4Rec (Sun et al., CIKM 2019): bidirectional transformer (FFN 4d, GELU), cloze head
  ``GELU(W h + b) E^T + b_item``. Its blocks are pre-LN like SASRec's: the paper's post-LN blocks did not train
  without a learning-rate warm-up here (a 2-block post-LN net stayed at the uniform loss on a planted pattern).
* GRU4Rec (Hidasi et al., ICLR 2016; tied output = "constrained embedding" of Hidasi & Czapp 2023).
* LRURec (Yue et al., 2024, the retriever of LlamaRec): linear recurrent unit blocks (complex diagonal recurrence
  ``h_t = lambda * h_{t-1} + gamma * B x_t`` with ``|lambda|`` in [r_min, r_max], output ``Re(C h_t)``, dropout,
  residual + LayerNorm, then a GELU FFN 4d), item bias on the output. The recurrence is computed here as a causal
  convolution with the kernel ``lambda^k`` (exact; padding contributes nothing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("sasrec", "bert4rec", "gru4rec", "lrurec")


def _init_weights(module: nn.Module, std: float = 0.02, linear_std: float | None = None) -> None:
    """Truncated-normal weights (+-2 std), zero biases, LayerNorm at identity; GRU weights keep torch's init.
    ``linear_std``: the std of Linear weights when it differs from the embeddings' (None: ``std``)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            s = linear_std(m) if callable(linear_std) and isinstance(m, nn.Linear) else std
            nn.init.trunc_normal_(m.weight, std=s, a=-2 * s, b=2 * s)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SeqNet(nn.Module):
    """Shared by the four nets: the item table (pad, items, mask), the tied output and the width bookkeeping."""

    def __init__(self, n_items: int, hidden: int, max_len: int, item_bias: bool = False):
        super().__init__()
        self.n_items, self.hidden, self.max_len = n_items, hidden, max_len
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, hidden, padding_idx=0)
        self.item_bias = nn.Parameter(torch.zeros(n_items)) if item_bias else None

    def positions(self, width: int) -> torch.Tensor:
        """Slot of each column in the ``max_len`` window (the last column is slot ``max_len - 1``)."""
        if width > self.max_len:
            raise ValueError(f"input width {width} exceeds max_len {self.max_len}")
        return torch.arange(self.max_len - width, self.max_len, device=self.item_emb.weight.device)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(..., d)`` -> logits over the real items ``(..., n_items)`` (column j = item j)."""
        out = self.head(h) @ self.item_emb.weight[1 : self.n_items + 1].T
        return out + self.item_bias if self.item_bias is not None else out

    def item_scores(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of chosen tokens only (``items`` are tokens, i.e. item id + 1), for the one-negative losses."""
        out = (self.head(h) * self.item_emb(items)).sum(-1)
        return out + self.item_bias[items - 1] if self.item_bias is not None else out


class Block(nn.Module):
    """A transformer block, pre-LN (nanoGPT style; ``pre_norm=False``: post-LN, as BERT)."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float, act: str, pre_norm: bool = True):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden {d} is not divisible by heads {heads}")
        self.heads, self.pre_norm, self.dropout = heads, pre_norm, dropout
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU() if act == "gelu" else nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn, d))
        self.drop = nn.Dropout(dropout)

    def attend(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, W, d = x.shape
        q, k, v = (t.view(B, W, self.heads, d // self.heads).transpose(1, 2) for t in self.qkv(x).split(d, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, W, d)))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attend(self.ln1(x), allowed)
            return x + self.drop(self.ffn(self.ln2(x)))
        x = self.ln1(x + self.attend(x, allowed))
        return self.ln2(x + self.drop(self.ffn(x)))


def attention_mask(tokens: torch.Tensor, causal: bool) -> torch.Tensor:
    """``(B, W, W)`` True where a query may look: real keys (causal: not later ones); a position always sees itself,
    so padding rows stay finite."""
    W = tokens.size(1)
    allowed = (tokens > 0)[:, None, :].expand(-1, W, -1)
    if causal:
        allowed = allowed & torch.ones(W, W, dtype=torch.bool, device=tokens.device).tril()
    return allowed | torch.eye(W, dtype=torch.bool, device=tokens.device)


class Transformer(SeqNet):
    """SASRec (``causal=True``) and BERT4Rec (``causal=False``)."""

    def __init__(self, n_items: int, *, hidden: int, layers: int, heads: int, dropout: float, max_len: int,
                 causal: bool):
        super().__init__(n_items, hidden, max_len, item_bias=not causal)
        self.causal = causal
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(
            Block(hidden, heads, hidden if causal else 4 * hidden, dropout, act="relu" if causal else "gelu")
            for _ in range(layers))
        # a final LayerNorm after the pre-LN blocks; BERT4Rec also normalises the embedding sum (as BERT) and has a
        # projection head
        self.ln = nn.LayerNorm(hidden)
        self.emb_ln = None if causal else nn.LayerNorm(hidden)
        self.proj = None if causal else nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self.drop = nn.Dropout(dropout)
        # BERT's 0.02 suits width 768; at width 64 it makes q.k and the value path vanish and the cloze model sits
        # on a long plateau, so Linear weights get 1/sqrt(fan_in) (the scale 0.02 has at 768 * 0.6)
        _init_weights(self, linear_std=lambda m: 0.5 / math.sqrt(m.in_features))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.item_emb(tokens)
        if self.causal:
            x = x * math.sqrt(self.hidden)
        x = x + self.pos_emb(self.positions(tokens.size(1)))
        x = self.drop(x if self.emb_ln is None else self.emb_ln(x)) * (tokens > 0).unsqueeze(-1)
        allowed = attention_mask(tokens, self.causal)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln(x)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.proj is None else self.proj(h)


class GRU4Rec(SeqNet):
    """Item embedding -> dropout -> GRU (packed: padding never enters the recurrence) -> dropout."""

    def __init__(self, n_items: int, *, hidden: int, layers: int, dropout: float, max_len: int, **_):
        super().__init__(n_items, hidden, max_len)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        _init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.positions(tokens.size(1))  # width check
        B, W = tokens.shape
        lengths = (tokens > 0).sum(1)
        # left-padded -> right-padded, pack, run, and back to the left-padded layout
        shift = (torch.arange(W, device=tokens.device)[None] + (W - lengths)[:, None]) % W
        right = tokens.gather(1, shift)
        x = self.drop(self.item_emb(right))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=W)
        back = (torch.arange(W, device=tokens.device)[None] - (W - lengths)[:, None]) % W
        return self.drop(out.gather(1, back[..., None].expand(-1, -1, self.hidden)))


class LRULayer(nn.Module):
    """One linear recurrent unit over ``2d`` complex channels (Orvieto et al. 2023, as LRURec uses it)."""

    def __init__(self, d: int, dropout: float, r_min: float = 0.8, r_max: float = 0.99):
        super().__init__()
        n = 2 * d
        u1, u2 = torch.rand(n), torch.rand(n)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(2 * math.pi * u2)
        gamma_log = 0.5 * torch.log(1 - torch.exp(-2 * torch.exp(nu_log)))  # sqrt(1 - |lambda|^2)
        self.lru_log = nn.Parameter(torch.stack([nu_log, theta_log, gamma_log]))
        self.inp = nn.Linear(d, 2 * n)   # real and imaginary parts of B x + b
        self.out = nn.Linear(2 * n, d)   # Re(C h) + c = [C_re, -C_im] . [h_re, h_im] + c
        self.drop, self.ln = nn.Dropout(dropout), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        W = x.size(1)
        nu, theta, gamma = torch.exp(self.lru_log)
        b = torch.view_as_complex(self.inp(x).unflatten(-1, (-1, 2)).contiguous()) * gamma
        b = b * real.unsqueeze(-1)  # padding adds nothing to the state
        lag = torch.arange(W, device=x.device)
        kernel = torch.exp(lag[:, None] * torch.complex(-nu, theta)[None])  # (W, n): lambda^k
        steps = lag[:, None] - lag[None, :]  # (t, s) -> t - s
        conv = kernel[steps.clamp(min=0)] * (steps >= 0).unsqueeze(-1)  # (W, W, n), zero above the diagonal
        h = torch.einsum("tsn,bsn->btn", conv, b)
        y = self.out(torch.cat([h.real, -h.imag], dim=-1))
        return self.ln(self.drop(y) + x)


class LRURec(SeqNet):
    def __init__(self, n_items: int, *, hidden: int, layers: int, dropout: float, max_len: int, **_):
        super().__init__(n_items, hidden, max_len, item_bias=True)
        self.emb_ln, self.drop = nn.LayerNorm(hidden), nn.Dropout(dropout)
        self.lrus = nn.ModuleList(LRULayer(hidden, dropout) for _ in range(layers))
        self.ffns = nn.ModuleList(nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Dropout(dropout),
                                                nn.Linear(4 * hidden, hidden), nn.Dropout(dropout))
                                  for _ in range(layers))
        self.ffn_lns = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        _init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.positions(tokens.size(1))
        real = (tokens > 0).float()
        x = self.emb_ln(self.drop(self.item_emb(tokens)))
        for lru, ffn, ln in zip(self.lrus, self.ffns, self.ffn_lns):
            x = lru(x, real)
            x = ln(x + ffn(x))
        return x


def build_net(model: str, n_items: int, *, hidden: int, layers: int, heads: int, dropout: float,
              max_len: int) -> SeqNet:
    if model == "sasrec":
        return Transformer(n_items, hidden=hidden, layers=layers, heads=heads, dropout=dropout, max_len=max_len,
                           causal=True)
    if model == "bert4rec":
        return Transformer(n_items, hidden=hidden, layers=layers, heads=heads, dropout=dropout, max_len=max_len,
                           causal=False)
    if model == "gru4rec":
        return GRU4Rec(n_items, hidden=hidden, layers=layers, dropout=dropout, max_len=max_len)
    if model == "lrurec":
        return LRURec(n_items, hidden=hidden, layers=layers, dropout=dropout, max_len=max_len)
    raise ValueError(f"unknown sequential model {model!r}; expected one of {MODELS}")
