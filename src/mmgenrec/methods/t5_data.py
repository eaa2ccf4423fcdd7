"""Token vocabulary and training samples of the T5 generative recommenders (TIGER, MQL4Rec).

The vocabulary is built from the id sets, no pretrained tokenizer: ``pad = 0`` (also the decoder start token, as
in T5), ``eos = 1``, then the hashed user tokens ``<user_0>`` .. (TIGER: 2000 buckets; MQL4Rec uses none), then
the task prompt tokens (MQL4Rec's soft prompts, ``<task_item2image_0>`` ..), then every item token of the id sets
(:func:`mmgenrec.models.item_tokens.item_vocabulary`: the grid ``<a_0>`` .. for every level the index spells).
It is stored beside the model (``vocab.json``) so that evaluation maps tokens exactly as training did.

A sample is ``(input_ids, labels)``: the encoder input ends with EOS, the labels are the target item's tokens +
EOS. TIGER's input is the user token followed by the tokens of the last ``max_history`` items before the target;
every prefix of a user's training part (the target at positions 1 .. n-1) is one sample.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmgenrec.io import InputError, read_json, write_json
from mmgenrec.models.item_tokens import item_vocabulary

PAD, EOS = 0, 1
SPECIALS = ("<pad>", "</s>")
_TOKEN = re.compile(r"<([A-Za-z])_(\d+)>")


class T5Vocab:
    """token <-> id for a from-scratch T5; quacks like a tokenizer where the project's trie helpers need one
    (``get_vocab``, ``eos_token_id``, ``pad_token_id``)."""

    eos_token_id = EOS
    pad_token_id = PAD

    def __init__(self, tokens: Sequence[str], n_user_buckets: int = 0):
        tokens = list(tokens)
        if tuple(tokens[:2]) != SPECIALS:
            raise ValueError(f"a T5 vocabulary starts with {SPECIALS}, got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in the vocabulary")
        self.tokens = tokens
        self.n_user_buckets = int(n_user_buckets)
        self.ids = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, indexes: Sequence[Mapping[int, list[str]]], *, n_user_buckets: int = 0,
              prompt_tokens: Sequence[str] = (), codebook_size: int | None = None) -> T5Vocab:
        tokens = list(SPECIALS) + [f"<user_{b}>" for b in range(n_user_buckets)] + list(prompt_tokens)
        for index in indexes:
            tokens = item_vocabulary(index, codebook_size, base_tokens=tokens)
        return cls(tokens, n_user_buckets)

    def __len__(self) -> int:
        return len(self.tokens)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.ids)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        try:
            return [self.ids[t] for t in tokens]
        except KeyError as e:
            raise InputError(f"token {e.args[0]!r} is not in the model's vocabulary (trained on another id set?)")

    def user_token(self, user: str) -> int:
        """TIGER's hashing trick: a stable hash of the user id into ``n_user_buckets`` tokens."""
        if not self.n_user_buckets:
            raise ValueError("this vocabulary has no user tokens")
        return self.ids[f"<user_{zlib.crc32(str(user).encode()) % self.n_user_buckets}>"]

    def save(self, path: str | Path) -> None:
        write_json(path, {"tokens": self.tokens, "n_user_buckets": self.n_user_buckets})

    @classmethod
    def load(cls, path: str | Path) -> T5Vocab:
        raw = read_json(path)
        return cls(raw["tokens"], raw.get("n_user_buckets", 0))


def to_upper(index: Mapping[int, list[str]], name: str = "index") -> dict[int, list[str]]:
    """MQL4Rec's image id set with upper-case level letters (``<a_3>`` -> ``<A_3>``), so that text and image
    tokens never collide; an index already in upper case is returned as is."""
    out = {}
    for item, toks in index.items():
        row = []
        for t in toks:
            m = _TOKEN.fullmatch(t)
            if m is None:
                raise InputError(f"{name}: item {item}: token {t!r} is not <letter_N>")
            row.append(f"<{m.group(1).upper()}_{m.group(2)}>")
        out[item] = row
    return out


def load_id_set(path: str | Path, *, upper: bool = False, codebook_size: int | None = None) -> dict[int, list[str]]:
    """An id set's ``index.json`` checked by the quantize stage's reader (collisions allowed: they are handled
    at decoding), relabelled to upper case when ``upper``."""
    from mmgenrec.quantize.run import load_index

    index = load_index(path, allow_collisions=True, codebook_size=codebook_size)
    return to_upper(index, str(path)) if upper else index


def check_items(sequences: Mapping[str, Sequence[int]], index: Mapping[int, list[str]], inter_json, index_json):
    for user, seq in sequences.items():
        for item in seq:
            if item not in index:
                raise InputError(f"{inter_json}: user {user}: item {item} is not in {index_json}")


def item_ids(vocab: T5Vocab, index: Mapping[int, list[str]]) -> dict[int, list[int]]:
    """item -> its token ids."""
    return {item: vocab.encode(toks) for item, toks in index.items()}


def encoder_input(history: Sequence[int], item_tok: Mapping[int, list[int]], max_history: int,
                  prefix: Sequence[int] = ()) -> list[int]:
    """``prefix`` (user token / task prompt) + the tokens of the last ``max_history`` items + EOS."""
    window = list(history)[-max_history:] if max_history > 0 else list(history)
    return [*prefix, *(t for i in window for t in item_tok[i]), EOS]


def prefix_samples(train: Mapping[str, Sequence[int]], src_tok: Mapping[int, list[int]],
                   tgt_tok: Mapping[int, list[int]], max_history: int,
                   prefix_of=lambda user: ()) -> list[tuple[list[int], list[int]]]:
    """Every prefix of every training sequence: target ``seq[j]`` (j >= 1) from the items before it, in user then
    position order. ``src_tok``/``tgt_tok`` are the history's and the target's token maps (the same for seqrec,
    different for MQL4Rec's cross-modal task)."""
    out = []
    for user, seq in train.items():
        for j in range(1, len(seq)):
            out.append((encoder_input(seq[:j], src_tok, max_history, prefix_of(user)), [*tgt_tok[seq[j]], EOS]))
    return out
