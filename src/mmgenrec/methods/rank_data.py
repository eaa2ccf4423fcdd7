"""What the LLM rankers read and the prompts they build: candidate files, item titles and captions, the listwise
(lettered) prompt of MLLM4Rec / LlamaRec and the yes/no prompt of TALLRec / CoLLM.

Candidate files (written by a retriever, e.g. a ``sequential`` method): ``results/<cat>/candidates/<retriever>/
{valid,test,train}.jsonl``, one JSON object per line, ``{"user", "target", "candidates": [K item ids]}`` (train
lines also carry ``history_len``: the training prefix ``train[:history_len]`` whose next item is ``target``). The
candidates never contain the user's history items; the target is among them or not (a retrieval miss).

Leakage rules, enforced here and tested on real prompts: a prompt shows the history (items before the target) and
the candidates, nothing else; the candidates are shown in an order shuffled by ``(seed, split, user[, prefix])``,
so the target's position carries no signal and the same seed gives the same prompts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmgenrec.io import InputError, iter_json_lines, read_json

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LIST_INSTRUCTION = ("Given the user's purchase history in chronological order, choose the candidate the user is most "
                    "likely to buy next. Answer with the letter of one candidate.")
YESNO_INSTRUCTION = ("Given the user's purchase history in chronological order, will the user buy the target item? "
                     "Answer with Yes or No.")
RESPONSE = "### Response:\n"
USER_SLOT, ITEM_SLOT = "<UserID>", "<ItemID>"  # CoLLM's collaborative-embedding slots (filled via inputs_embeds)


@dataclass(frozen=True)
class CandidateRow:
    user: str
    target: int
    candidates: list[int]
    history_len: int | None = None  # train rows: the prefix length


def read_candidates(path: str | Path) -> list[CandidateRow]:
    """A retriever's candidate file, checked line by line (errors name the file, line and field)."""
    rows = []
    for lineno, rec in iter_json_lines(path):
        for key in ("user", "target", "candidates"):
            if key not in rec:
                raise InputError(f"{path}: line {lineno}: field {key!r} missing")
        cands = rec["candidates"]
        if not isinstance(cands, list) or not cands or not all(isinstance(i, int) and i >= 0 for i in cands):
            raise InputError(f"{path}: line {lineno}: field 'candidates' must be a non-empty list of item ids")
        if len(set(cands)) != len(cands):
            raise InputError(f"{path}: line {lineno}: field 'candidates' repeats an item")
        if len(cands) > len(LETTERS):
            raise InputError(f"{path}: line {lineno}: {len(cands)} candidates; the lettered prompt holds at most "
                             f"{len(LETTERS)}")
        hl = rec.get("history_len")
        rows.append(CandidateRow(str(rec["user"]), int(rec["target"]), [int(i) for i in cands],
                                 None if hl is None else int(hl)))
    return rows


def candidates_by_user(path: str | Path, examples) -> dict[str, list[int]]:
    """The candidate list of every evaluated example (``Evaluation.examples``); a missing user or a target that
    differs from the example's (another split, another data version) is an error naming the file and user."""
    rows = {r.user: r for r in read_candidates(path)}
    out = {}
    for ex in examples:
        row = rows.get(ex.user)
        if row is None:
            raise InputError(f"{path}: no candidate line for user {ex.user}")
        if row.target != ex.target:
            raise InputError(f"{path}: user {ex.user}: target {row.target} but the split's target is {ex.target} "
                             "(candidates from another split or data version)")
        out[ex.user] = row.candidates
    return out


def item_titles(item_json: str | Path, max_chars: int = 60) -> dict[int, str]:
    """item id -> its title (cut to ``max_chars``; the item id when it has none)."""
    items = read_json(item_json)
    if not isinstance(items, dict):
        raise InputError(f"{item_json}: expected a JSON object item id -> fields")
    out = {}
    for key, fields in items.items():
        title = str((fields or {}).get("title") or "").strip() or f"item {key}"
        out[int(key)] = " ".join(title.split())[:max_chars]
    return out


def read_captions(path: str | Path | None, max_chars: int = 80) -> dict[int, str]:
    """``captions.json`` (:mod:`mmgenrec.methods.captions`) -> item id -> caption; ``{}`` when no path."""
    if path is None:
        return {}
    data = read_json(path)
    caps = data.get("captions") if isinstance(data, dict) else None
    if not isinstance(caps, dict):
        raise InputError(f"{path}: expected {{\"captions\": {{item id: caption}}, ...}}")
    return {int(k): " ".join(str(v).split())[:max_chars] for k, v in caps.items() if v}


def shuffled(candidates: Sequence[int], seed: int, key: str) -> list[int]:
    """The candidates in an order drawn from ``(seed, key)`` only: never from the target or the retriever's order."""
    out = list(candidates)
    random.Random(f"{seed}|{key}").shuffle(out)
    return out


def with_target(candidates: Sequence[int], target: int) -> list[int]:
    """A training list: the retriever's candidates with the target put in place of the last one when absent."""
    cands = list(candidates)
    return cands if target in cands else cands[:-1] + [target]


class ItemText:
    """How an item reads in a prompt: its title, plus its image caption when captions are on (MLLM4Rec)."""

    def __init__(self, titles: Mapping[int, str], captions: Mapping[int, str] | None = None):
        self.titles, self.captions = titles, captions or {}

    def __call__(self, item: int) -> str:
        title = self.titles.get(int(item))
        if title is None:
            raise InputError(f"item {item} is not in the prepared item file")
        cap = self.captions.get(int(item))
        return f"{title} (image: {cap})" if cap else title


@dataclass(frozen=True)
class ListPrompt:
    text: str
    order: list[int]  # the candidates in the order shown (letter i = order[i])


def list_prompt(history: Sequence[int], candidates: Sequence[int], text: ItemText, *, seed: int, key: str,
                max_history: int) -> ListPrompt:
    """MLLM4Rec / LlamaRec's listwise prompt; the answer is the letter of the next item (read at the last token)."""
    order = shuffled(candidates, seed, key)
    hist = list(history)[-max_history:] if max_history else []
    lines = [f"### Instruction:\n{LIST_INSTRUCTION}", "### Input:", "History:"]
    lines += [f"({i + 1}) {text(it)}" for i, it in enumerate(hist)]
    lines += ["Candidates:"] + [f"({LETTERS[i]}) {text(it)}" for i, it in enumerate(order)]
    return ListPrompt("\n".join(lines) + "\n" + RESPONSE, order)


def yesno_prompt(history: Sequence[int], item: int, text: ItemText, *, max_history: int,
                 collab: bool = False) -> str:
    """TALLRec's yes/no prompt; with ``collab`` CoLLM's, with the user's and the item's collaborative slots."""
    hist = list(history)[-max_history:] if max_history else []
    user = f" The user's collaborative feature: {USER_SLOT}." if collab else ""
    slot = f" with the collaborative feature {ITEM_SLOT}" if collab else ""
    body = "; ".join(f'"{text(i)}"' for i in hist)
    return (f"### Instruction:\n{YESNO_INSTRUCTION}\n### Input:\nHistory: {body}.{user}\n"
            f'Target item: "{text(item)}"{slot}.\n{RESPONSE}')


def train_rows(train: Mapping[str, Sequence[int]], rows: Sequence[CandidateRow] | None, *, n_candidates: int,
               n_items: int, seed: int, source: str = "train.jsonl") -> list[tuple[str, list[int], int, list[int]]]:
    """Listwise training samples ``(user, history, target, candidates)`` on the training part only.

    From a retriever's train rows (its top-K of the training step, the target put in when absent, as the issue
    asks) when given, else LlamaRec's released recipe: every prefix, ``n_candidates - 1`` random items outside
    the prefix and the target.
    """
    out = []
    if rows:
        for r in rows:
            seq = train.get(r.user)
            if seq is None or r.history_len is None or not 1 <= r.history_len < len(seq):
                raise InputError(f"{source}: user {r.user}: history_len {r.history_len} is not a training prefix")
            if seq[r.history_len] != r.target:
                raise InputError(f"{source}: user {r.user}: target {r.target} is not train[{r.history_len}]")
            out.append((r.user, list(seq[:r.history_len]), r.target, with_target(r.candidates, r.target)))
        return out
    rng = random.Random(seed)
    for user, seq in train.items():
        for t in range(1, len(seq)):
            hist, target, seen = list(seq[:t]), int(seq[t]), set(seq[:t + 1])
            pool = [i for i in range(n_items) if i not in seen]
            cands = [target] + rng.sample(pool, min(n_candidates - 1, len(pool)))
            out.append((user, hist, target, cands))
    return out
