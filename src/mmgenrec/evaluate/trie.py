"""Trie-constrained beam search over semantic item IDs.

Every item ID is a fixed-length sequence of ``L`` tokens (``<a_12><b_7><c_3><d_31>`` is 4 tokens); the decoded
answer is those ``L`` tokens followed by EOS. :class:`ItemTrie` compiles all item sequences ONCE into flat tensors:

* per depth ``d``, the sorted keys of all item prefixes of length ``d`` (each item token gets a local digit, a
  prefix is the base-(T+1) number of its digits) and their node ids. A beam's node is recomputed at every step
  from its generated suffix with ONE gather + weighted sum + ``searchsorted`` (plus a finish check after the full
  item), so beam reordering by the search does not matter and no per-token loop runs; a transition table (sorted
  edge keys ``parent_node * K + token``, ``K`` = largest token id + 2) backs tries too deep for int64 keys;
* the allowed next tokens of every node in CSR form (``node_start``, ``node_tokens``), and per depth the largest
  number of allowed tokens, so one step gathers a ``[n_beams, width]`` index block with no Python loop over beams.

Besides the trie nodes there are two special nodes: FINISHED (after the EOS that follows a full item; allows only
PAD/EOS so a finished beam stays finished) and DEAD (an impossible prefix, which should not happen under the
constraint; allows only EOS so the beam ends, and it is counted invalid afterwards). DEAD is absorbing.

:class:`TrieLogitsProcessor` masks the ``[n_beams, vocab]`` scores IN PLACE: it gathers the allowed scores,
fills the row with ``-inf`` and scatters the allowed scores back. This is exactly ``masked_fill_(~allowed, -inf)``
with the boolean allowed mask, without materialising that ``[n_beams, vocab]`` mask (cheaper at a 152k vocab; see
``benchmarks/decode.md``). The allowed-token block repeats a node's last token as padding, so the scatter
writes identical values to duplicate indices and stays deterministic. In place is safe inside ``generate``: beam
search hands the processors a fresh ``log_softmax`` tensor (greedy/sampling a fresh copy of the logits).

:func:`generate_topk` by default runs :func:`mmgenrec.evaluate.beam.trie_beam_search` (one prefill per prompt, beams
over the trie's allowed tokens; same items and scores). With ``backend="hf"`` (the reference) it runs HF beam
search with a GenerationConfig built from scratch, so nothing from the model's own
``generation_config`` (Qwen ships ``do_sample=True``, ``top_k``, ``top_p``, ``temperature``,
``repetition_penalty``) leaks into ranking: transformers fills every ``None`` field of a passed config from
``model.generation_config``, so the fresh config sets every penalty explicitly to its neutral value, and for the
duration of the call the model's ``generation_config`` is swapped for an empty one (restored afterwards).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

log = logging.getLogger(__name__)

__all__ = [
    "ItemTrie",
    "TrieLogitsProcessor",
    "constrained_generation_config",
    "generate_topk",
    "reference_prefix_allowed_tokens_fn",
]


class ItemTrie:
    """All item token sequences, compiled into tensors for vectorised constrained decoding.

    ``seqs[i]`` is the token-id sequence of item ``i``; all must have the same length ``L`` (``.depth``) and be
    distinct. ``eos_token_id`` ends every answer and must not occur inside an item sequence.
    """

    def __init__(self, seqs: Sequence[Sequence[int]], eos_token_id: int, pad_token_id: int | None = None):
        seqs = [[int(t) for t in s] for s in seqs]
        if not seqs:
            raise ValueError("ItemTrie needs at least one item sequence")
        depth = len(seqs[0])
        if depth < 1:
            raise ValueError("item 0 has an empty token sequence")
        for i, s in enumerate(seqs):
            if len(s) != depth:
                raise ValueError(f"item {i} has {len(s)} tokens, item 0 has {depth}: all item ids must have the "
                                 "same length")
        if eos_token_id is None:
            raise ValueError("eos_token_id is required")
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = None if pad_token_id is None else int(pad_token_id)
        self.depth = depth
        self.seqs = seqs
        self._item: dict[tuple[int, ...], int] = {}
        for i, s in enumerate(seqs):
            key = tuple(s)
            if key in self._item:
                raise ValueError(f"items {self._item[key]} and {i} have the same token sequence {list(key)}")
            self._item[key] = i

        arr = np.asarray(seqs, dtype=np.int64)  # [N, L]
        if arr.min() < 0:
            raise ValueError("token ids must be non-negative")
        if (arr == self.eos_token_id).any():
            bad = int(np.nonzero((arr == self.eos_token_id).any(axis=1))[0][0])
            raise ValueError(f"item {bad} contains the eos token {self.eos_token_id}")
        specials = [self.eos_token_id] + ([] if self.pad_token_id is None else [self.pad_token_id])
        self.max_token_id = int(max(arr.max(), *specials))
        # Key radix: one spare value (K - 1) for any out-of-range token, which is never on an edge.
        self._radix = self.max_token_id + 2

        # Nodes: root 0, then the unique prefixes of depth 1..L (in sorted order), then FINISHED, then DEAD.
        parent_of_row = np.zeros(len(seqs), dtype=np.int64)  # node of each item's prefix at the current depth
        n_nodes = 1
        edge_parent, edge_token, edge_child = [], [], []
        depth_nodes = [np.array([0], dtype=np.int64)]
        for d in range(1, depth + 1):
            uniq, inverse = np.unique(arr[:, :d], axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            ids = n_nodes + np.arange(len(uniq), dtype=np.int64)
            # parent node of each new node: the node of (any) row that has this prefix
            first_row = np.empty(len(uniq), dtype=np.int64)
            first_row[inverse] = np.arange(len(seqs))  # any row with the prefix: they share the parent
            edge_parent.append(parent_of_row[first_row])
            edge_token.append(uniq[:, d - 1])
            edge_child.append(ids)
            depth_nodes.append(ids)
            parent_of_row = ids[inverse]
            n_nodes += len(uniq)
        leaves = depth_nodes[-1]
        self.finished_node = n_nodes
        self.dead_node = n_nodes + 1
        n_nodes += 2
        self.n_nodes = n_nodes
        finish_tokens = sorted(set(specials))
        # leaf --eos--> FINISHED; FINISHED --pad/eos--> FINISHED
        edge_parent += [leaves, np.full(len(finish_tokens), self.finished_node)]
        edge_token += [np.full(len(leaves), self.eos_token_id), np.array(finish_tokens)]
        edge_child += [np.full(len(leaves), self.finished_node), np.full(len(finish_tokens), self.finished_node)]
        e_parent = np.concatenate(edge_parent).astype(np.int64)
        e_token = np.concatenate(edge_token).astype(np.int64)
        e_child = np.concatenate(edge_child).astype(np.int64)
        if n_nodes * self._radix >= 2**62:
            raise ValueError("trie too large for int64 edge keys")
        keys = e_parent * self._radix + e_token
        order = np.argsort(keys, kind="stable")
        edge_keys, edge_child_sorted = keys[order], e_child[order]

        # Allowed next tokens per node (CSR). Sorting by key = sorting by (parent, token): each parent's allowed
        # tokens are one sorted run; DEAD (the last node, no edges) gets the single slot after them: eos.
        counts = np.bincount(e_parent, minlength=n_nodes)
        counts[self.dead_node] = 1
        starts = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        node_tokens = np.append(e_token[order], self.eos_token_id).astype(np.int64)
        # width per number of generated tokens g (0..L+1; g > L uses L+1): max allowed-set size of reachable nodes
        self._widths = [int(max(counts[depth_nodes[g]].max(), 1)) for g in range(depth + 1)]
        self._widths.append(int(counts[self.finished_node]))
        widths = self._widths

        self.edge_keys = torch.from_numpy(edge_keys)
        self.edge_child = torch.from_numpy(edge_child_sorted)
        self.node_start = torch.from_numpy(starts[:-1].copy())
        self.node_count = torch.from_numpy(counts.astype(np.int64))
        self.node_tokens = torch.from_numpy(node_tokens)
        self._arange = torch.arange(max(widths), dtype=torch.int64)

        # One-lookup node search: every token that occurs in an item gets a local digit 1..T (0 = no item token);
        # a prefix of d tokens is the base-(T+1) number of its digits, and the depth-d nodes are sorted by that key.
        # A beam's node is then one gather + one weighted sum + ONE searchsorted, whatever the depth.
        item_tokens = np.unique(arr)
        base = len(item_tokens) + 1
        local = np.zeros(self._radix, dtype=np.int64)
        local[item_tokens] = np.arange(1, base, dtype=np.int64)
        finish_mask = np.zeros(self._radix, dtype=bool)
        finish_mask[finish_tokens] = True
        self.local_of = torch.from_numpy(local)
        self.finish_mask = torch.from_numpy(finish_mask)
        self._fast = depth * np.log2(base) < 62  # keys fit int64 (4 levels x 1024 tokens: 40 bits)
        self.prefix_keys, self.prefix_nodes, self.powers = [None], [None], [None]
        if self._fast:
            digits = local[arr]  # [N, L]
            for d in range(1, depth + 1):
                pw = base ** np.arange(d - 1, -1, -1, dtype=np.int64)
                keys_d, first = np.unique(digits[:, :d] @ pw, return_index=True)
                # node id of each unique prefix: the node reached by the item at row ``first``
                nodes_d = self._walk_np(arr[first, :d])
                self.prefix_keys.append(torch.from_numpy(keys_d))
                self.prefix_nodes.append(torch.from_numpy(nodes_d))
                self.powers.append(torch.from_numpy(pw))

    def _walk_np(self, prefixes: np.ndarray) -> np.ndarray:
        """Node of each row of ``prefixes`` by walking the edge table (numpy; compile time only)."""
        keys = self.edge_keys.numpy()
        node = np.zeros(len(prefixes), dtype=np.int64)
        for d in range(prefixes.shape[1]):
            pos = np.searchsorted(keys, node * self._radix + prefixes[:, d])
            node = self.edge_child.numpy()[pos]
        return node

    # ------------------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def device(self) -> torch.device:
        return self.edge_keys.device

    def to(self, device) -> ItemTrie:
        """Move the compiled tensors to ``device`` (in place) and return self."""
        for name in ("edge_keys", "edge_child", "node_start", "node_count", "node_tokens", "_arange", "local_of",
                     "finish_mask"):
            setattr(self, name, getattr(self, name).to(device))
        for name in ("prefix_keys", "prefix_nodes", "powers"):
            setattr(self, name, [None if t is None else t.to(device) for t in getattr(self, name)])
        return self

    def item_of(self, token_seq) -> int | None:
        """Item id of a full ``L``-token sequence (list, tuple, tensor or array), or None if it is no item."""
        if isinstance(token_seq, torch.Tensor | np.ndarray):
            token_seq = token_seq.tolist()
        key = tuple(int(t) for t in token_seq)
        return self._item.get(key) if len(key) == self.depth else None

    def width(self, n_generated: int) -> int:
        """Largest number of allowed next tokens over the nodes reachable after ``n_generated`` tokens."""
        return self._widths[min(n_generated, self.depth + 1)]

    def nodes(self, generated: torch.Tensor) -> torch.Tensor:
        """Node id of each row of ``generated`` ([n, g] generated token ids), vectorised over rows.

        No host synchronisation: a fixed number of tensor ops per call (one ``searchsorted`` for the item part),
        so the processor never waits for the device inside ``generate``.
        """
        n, g = generated.shape
        device = self.edge_keys.device
        if g == 0:
            return torch.zeros(n, dtype=torch.int64, device=device)
        tokens = generated.to(device=device, dtype=torch.int64)
        tokens = torch.where((tokens < 0) | (tokens > self.max_token_id), self._radix - 1, tokens)
        if not self._fast:
            return self._nodes_stepwise(tokens)
        depth = min(g, self.depth)
        key = (self.local_of[tokens[:, :depth]] * self.powers[depth]).sum(1)
        keys = self.prefix_keys[depth]
        pos = torch.searchsorted(keys, key).clamp_(max=keys.numel() - 1)
        node = torch.where(keys[pos] == key, self.prefix_nodes[depth][pos], self.dead_node)
        if g > self.depth:  # full item, then EOS, then only PAD/EOS: FINISHED; anything else: DEAD
            ok = (tokens[:, self.depth] == self.eos_token_id) & self.finish_mask[tokens[:, self.depth + 1:]].all(1)
            node = torch.where((node != self.dead_node) & ok, self.finished_node, self.dead_node)
        return node

    def _nodes_stepwise(self, tokens: torch.Tensor) -> torch.Tensor:
        """Fallback for tries too deep for single int64 prefix keys: one edge lookup per generated token."""
        node = torch.zeros(tokens.shape[0], dtype=torch.int64, device=tokens.device)
        n_edges = self.edge_keys.numel()
        for d in range(tokens.shape[1]):
            key = node * self._radix + tokens[:, d]
            pos = torch.searchsorted(self.edge_keys, key).clamp_(max=n_edges - 1)
            hit = self.edge_keys[pos] == key
            node = torch.where(hit, self.edge_child[pos], self.dead_node)
        return node

    def allowed_block(self, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([n, width] allowed next-token ids, [n, width] bool: slot is real, not padding) per row of ``generated``.

        A row's last allowed token repeats as padding, so every slot holds a token that keeps the row in the trie.
        """
        node = self.nodes(generated)
        width = self.width(generated.shape[1])
        start = self.node_start[node]
        count = self.node_count[node].unsqueeze(1)
        slots = self._arange[:width].unsqueeze(0)
        offs = torch.minimum(slots, count - 1)
        return self.node_tokens[start.unsqueeze(1) + offs], slots < count

    def allowed_tokens(self, generated: torch.Tensor) -> torch.Tensor:
        """[n, width] allowed next-token ids per row (a row's last allowed token repeats as padding)."""
        return self.allowed_block(generated)[0]


class TrieLogitsProcessor(LogitsProcessor):
    """Allow only trie continuations; vectorised over all beams, masks ``scores`` in place.

    ``prompt_len`` is the width of the (left-padded) prompt for decoder-only models, or the number of forced
    decoder tokens (1: the decoder start token) for encoder-decoder models.
    """

    def __init__(self, trie: ItemTrie, prompt_len: int):
        if prompt_len < 0:
            raise ValueError(f"prompt_len must be >= 0, got {prompt_len}")
        self.trie = trie
        self.prompt_len = int(prompt_len)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        n_generated = input_ids.shape[1] - self.prompt_len
        if n_generated < 0:
            raise ValueError(f"input_ids has {input_ids.shape[1]} columns, fewer than prompt_len={self.prompt_len}")
        if self.trie.max_token_id >= scores.shape[-1]:
            raise ValueError(f"trie token id {self.trie.max_token_id} outside the vocabulary of {scores.shape[-1]}")
        allowed = self.trie.allowed_tokens(input_ids[:, self.prompt_len:]).to(scores.device)
        kept = scores.gather(1, allowed)
        scores.fill_(-float("inf"))
        scores.scatter_(1, allowed, kept)
        return scores


def reference_prefix_allowed_tokens_fn(trie_or_seqs, prompt_len: int, eos_token_id: int | None = None,
                                       pad_token_id: int | None = None):
    """Slow reference with a Python dict trie, for ``generate(prefix_allowed_tokens_fn=...)``: tests only.

    Same semantics as :class:`TrieLogitsProcessor`: trie children for a proper prefix, EOS after a full item,
    PAD/EOS after that EOS, and EOS alone once the prefix is impossible.
    """
    if isinstance(trie_or_seqs, ItemTrie):
        seqs = trie_or_seqs.seqs
        eos_token_id = trie_or_seqs.eos_token_id if eos_token_id is None else eos_token_id
        pad_token_id = trie_or_seqs.pad_token_id if pad_token_id is None else pad_token_id
    else:
        seqs = [[int(t) for t in s] for s in trie_or_seqs]
    if eos_token_id is None:
        raise ValueError("eos_token_id is required")
    depth = len(seqs[0])
    root: dict = {}
    for s in seqs:
        node = root
        for t in s:
            node = node.setdefault(int(t), {})
    finish = sorted({eos_token_id} | ({pad_token_id} if pad_token_id is not None else set()))

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        generated = input_ids[prompt_len:].tolist()
        node = root
        for i, t in enumerate(generated):
            if i < depth:
                node = node.get(t)
                if node is None:
                    return [eos_token_id]
            elif i == depth:
                if t != eos_token_id:
                    return [eos_token_id]
            elif t not in finish:
                return [eos_token_id]
        if len(generated) < depth:
            return sorted(node)
        if len(generated) == depth:
            return [eos_token_id]
        return finish

    return allowed


def constrained_generation_config(*, num_beams: int, max_new_tokens: int, eos_token_id: int,
                                  pad_token_id: int | None, decoder_start_token_id: int | None = None
                                  ) -> GenerationConfig:
    """A GenerationConfig built from scratch for deterministic beam search ranking.

    Every field that could change the scores is set explicitly to its neutral value: transformers fills each
    ``None`` field from ``model.generation_config``. ``length_penalty=0.0``: every answer has the same length
    (``L`` tokens + EOS), so the penalty cannot change the order; 0.0 makes ``sequences_scores`` the plain sum of
    log-probabilities. ``early_stopping=True``: all beams finish at the same step anyway.
    """
    return GenerationConfig(
        num_beams=num_beams, num_return_sequences=num_beams, max_new_tokens=max_new_tokens,
        min_length=0, do_sample=False, early_stopping=True, length_penalty=0.0, use_cache=True,
        temperature=1.0, top_k=50, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,
        repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
        encoder_no_repeat_ngram_size=0, guidance_scale=1.0, remove_invalid_values=False, renormalize_logits=False,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, decoder_start_token_id=decoder_start_token_id,
        output_scores=True, return_dict_in_generate=True,
    )


def _hf_model(model):
    """The transformers model whose ``generate`` actually runs (unwraps a peft PeftModel)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@contextmanager
def _isolated_generation_config(model):
    """Temporarily give the model an empty GenerationConfig so none of its defaults fill our ``None`` fields."""
    target = _hf_model(model)
    saved = getattr(target, "generation_config", None)
    target.generation_config = GenerationConfig()
    try:
        yield
    finally:
        target.generation_config = saved


def _decoder_start_token_id(model) -> int | None:
    target = _hf_model(model)
    if not getattr(target.config, "is_encoder_decoder", False):
        return None
    for source in (getattr(target, "generation_config", None), target.config):
        for name in ("decoder_start_token_id", "bos_token_id"):
            value = getattr(source, name, None) if source is not None else None
            if value is not None:
                return int(value)
    return None


def generate_topk(model, batch: dict, trie: ItemTrie, *, num_beams: int, top_k: int, prompt_len: int | None = None,
                  eos_token_id: int | None = None, pad_token_id: int | None = None,
                  logits_processor=None, return_scores: bool = True, backend: str = "auto"
                  ) -> tuple[list[list[int]], list[list[float]], int]:
    """Constrained beam search; per example the ``top_k`` best distinct item ids and their sequence scores.

    ``backend``: ``"trie_beam"`` runs :func:`mmgenrec.evaluate.beam.trie_beam_search` (every prompt's prefill
    once, top beams among the trie's allowed tokens only; same items and scores as HF); ``"hf"`` runs HF
    ``generate`` with beam search and the trie processor (the reference); ``"auto"`` (default) is ``"trie_beam"``
    unless a ``logits_processor`` is passed (only HF ``generate`` takes one). With ``"trie_beam"``, a beam slot
    without an item (fewer items than beams) is simply not returned, never counted invalid.

    ``batch`` holds the model inputs (``input_ids``, ``attention_mask`` with LEFT padding for decoder-only models,
    plus e.g. ``pixel_values``). ``prompt_len`` is the padded prompt width for decoder-only models (default:
    ``input_ids.shape[1]``) and 1 for encoder-decoder models (the decoder start token; the default there).
    ``logits_processor``: None uses :class:`TrieLogitsProcessor`; a processor or a list replaces it (an empty
    list decodes unconstrained).

    Returns ``(ranked, scores, n_invalid)``: ``ranked[b]`` lists item ids (indices into the trie's sequences),
    best first; ``scores[b]`` their sequence scores (sum of log-probabilities); ``n_invalid`` counts returned
    beams (over all examples) whose first ``L`` generated tokens are not an item id. With the trie every beam is
    valid and distinct; should fewer than ``top_k`` distinct valid items come back, the list is shorter and a
    warning is logged. ``return_scores=False`` skips ``output_scores`` (generate then does not copy the
    ``[rows, vocab]`` scores at every step; the ranking is the same) and returns empty score lists.
    """
    if num_beams < top_k:
        raise ValueError(f"num_beams ({num_beams}) must be >= top_k ({top_k})")
    eos_token_id = trie.eos_token_id if eos_token_id is None else int(eos_token_id)
    pad_token_id = trie.pad_token_id if pad_token_id is None else pad_token_id
    is_enc_dec = bool(getattr(_hf_model(model).config, "is_encoder_decoder", False))
    if prompt_len is None:
        if is_enc_dec:
            prompt_len = batch["decoder_input_ids"].shape[1] if "decoder_input_ids" in batch else 1
        else:
            prompt_len = batch["input_ids"].shape[1]
    elif not is_enc_dec and "input_ids" in batch and prompt_len != batch["input_ids"].shape[1]:
        raise ValueError(f"prompt_len={prompt_len} but the padded prompt is {batch['input_ids'].shape[1]} wide")
    if backend == "auto":
        backend = "hf" if logits_processor is not None else "trie_beam"
    if backend == "trie_beam":
        if logits_processor is not None:
            raise ValueError("logits_processor applies to backend='hf' only")
        if eos_token_id != trie.eos_token_id:
            raise ValueError(f"eos_token_id={eos_token_id} differs from the trie's {trie.eos_token_id}")
        from mmgenrec.evaluate.beam import topk_items

        return topk_items(_hf_model(model), batch, trie, num_beams=num_beams, top_k=top_k,
                          return_scores=return_scores,
                          decoder_start_token_id=_decoder_start_token_id(model) if is_enc_dec else None)
    if backend != "hf":
        raise ValueError(f"backend must be 'auto', 'trie_beam' or 'hf', got {backend!r}")
    if logits_processor is None:
        logits_processor = [TrieLogitsProcessor(trie, prompt_len)]
    elif not isinstance(logits_processor, list | tuple):
        logits_processor = [logits_processor]
    config = constrained_generation_config(
        num_beams=num_beams, max_new_tokens=trie.depth + 1, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        decoder_start_token_id=_decoder_start_token_id(model) if is_enc_dec else None)
    config.output_scores = bool(return_scores)
    # generate() runs under no_grad; no inference_mode, which would leave inference tensors in module caches
    # (Qwen2.5-VL keeps rope_deltas on the module) that a later training forward cannot use.
    with _isolated_generation_config(model):
        out = model.generate(**batch, generation_config=config, logits_processor=LogitsProcessorList(logits_processor))

    sequences = out.sequences
    n_rows = sequences.shape[0]
    if n_rows % num_beams:
        raise RuntimeError(f"generate returned {n_rows} sequences, not a multiple of num_beams={num_beams}")
    generated = sequences[:, prompt_len: prompt_len + trie.depth].cpu()
    if generated.shape[1] < trie.depth:  # every beam stopped early (only possible unconstrained)
        generated = torch.cat([generated, generated.new_full((n_rows, trie.depth - generated.shape[1]), -1)], 1)
    seq_scores = out.sequences_scores.float().cpu().tolist() if return_scores else None
    rows = generated.tolist()
    ranked, scores, n_invalid = [], [], 0
    for b in range(n_rows // num_beams):
        items, item_scores, seen = [], [], set()
        for r in range(b * num_beams, (b + 1) * num_beams):  # beams come sorted by sequences_scores
            item = trie._item.get(tuple(rows[r]))
            if item is None:
                n_invalid += 1
                continue
            if item in seen or len(items) >= top_k:
                continue
            seen.add(item)
            items.append(item)
            if return_scores:
                item_scores.append(seq_scores[r])
        if len(items) < top_k:
            log.warning("example %d: only %d distinct valid items among %d beams (top_k=%d)", b, len(items),
                        num_beams, top_k)
        ranked.append(items)
        scores.append(item_scores)
    return ranked, scores, n_invalid

