"""Training examples (seqrec) and a collator that masks everything but the answer."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from mmgenrec.prompts import render, seqrec_messages, sid_string

IGNORE = -100


def seqrec_pairs(sequences: dict[str, list[int]], max_history: int) -> list[tuple[list[int], int]]:
    """(history, target) for every position of every user's TRAIN part (valid/test = last two items held out)."""
    pairs = []
    for seq in sequences.values():
        train = seq[:-2]
        for t in range(1, len(train)):
            pairs.append((train[max(0, t - max_history) : t], train[t]))
    return pairs


class SeqRecDataset(Dataset):
    """Tokenised seqrec examples; the loss covers the target's ID tokens and the end-of-turn token."""

    def __init__(self, processor, pairs, index: dict[int, list[str]], template_ids=(0,), seed: int = 0):
        rng = random.Random(seed)
        tok = processor.tokenizer
        self.examples = []
        for history, target in pairs:
            msgs = seqrec_messages([sid_string(index[i]) for i in history], rng.choice(list(template_ids)))
            prompt, full = render(processor, msgs, sid_string(index[target]))
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            f_ids = tok(full, add_special_tokens=False)["input_ids"]
            if f_ids[: len(p_ids)] != p_ids:
                raise ValueError("prompt tokens are not a prefix of prompt+answer tokens; check the chat template")
            labels = [IGNORE] * len(p_ids) + f_ids[len(p_ids) :]
            self.examples.append({"input_ids": f_ids, "labels": labels})

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


@dataclass
class PadCollator:
    """Pad to the longest example on ``side``; labels padded with -100, ``mm_token_type_ids`` kept (text = 0)."""

    pad_token_id: int
    side: str = "right"

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        out = {"input_ids": [], "attention_mask": [], "labels": [], "mm_token_type_ids": []}
        for e in examples:
            n = len(e["input_ids"])
            pad = width - n
            rows = {
                "input_ids": (e["input_ids"], self.pad_token_id),
                "attention_mask": ([1] * n, 0),
                "labels": (e["labels"], IGNORE),
                "mm_token_type_ids": ([0] * n, 0),
            }
            for key, (values, fill) in rows.items():
                out[key].append(values + [fill] * pad if self.side == "right" else [fill] * pad + values)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
