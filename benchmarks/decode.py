"""Constrained decoding end to end: users/s of three ways to rank items with trie-constrained beam search.

Not a test. Same random-init Qwen2 decoder (Qwen2.5-3B's proportions: hidden 2048, 16 heads, 2 KV heads,
intermediate 11008, vocab 152064, tied embeddings; ``--layers`` reduces the depth) and the same users for

* (a) HF ``generate`` + ``prefix_allowed_tokens_fn`` (HF's ``PrefixConstrainedLogitsProcessor`` around the
  Python dict trie: the original study's way),
* (b) HF ``generate`` + our vectorised ``TrieLogitsProcessor``,
* (c) :func:`mmgenrec.evaluate.beam.trie_beam_search` (one prefill per prompt, beams over the trie),

all through ``generate_topk(..., return_scores=False)`` as ``evaluate_seqrec`` calls it, timed interleaved batch by
batch (a, b, c / b, c, a / ...); the ranked top-k lists must be identical (asserted). On the CPU the times are the
process's CPU seconds (``time.process_time``; run with ``--threads 1``), which other jobs on a shared machine do not
inflate; on a GPU wall seconds after ``cuda.synchronize``.

Prompts are synthetic token ids shaped like the seqrec prompt: ~30 template tokens (random per user, so widths and
left padding differ), then per history item its 4 ID tokens + a separator, then ~10 tokens of the assistant
header. Items: ``--items`` random 4-level IDs over 256 codes per level; the ID tokens are the last 1024 vocabulary
rows (like added tokens).

Then the scaling curves: (a) and (c) only, one factor at a time around the base point (history, beams, catalogue).

    PYTHONPATH=src python benchmarks/decode.py --threads 1 --layers 2 --users 4 --batch 2 --curve-users 2
    PYTHONPATH=src python benchmarks/decode.py --device cuda --layers 36 --users 64 --batch 16 --curve-users 32
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time

import numpy as np
import torch
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from mmgenrec.evaluate.trie import ItemTrie, generate_topk, reference_prefix_allowed_tokens_fn

LEVELS, CODES = 4, 256


def make_items(rng, vocab, n_items):
    first = vocab - LEVELS * CODES
    tuples = set()
    while len(tuples) < n_items:
        tuples.update(tuple(int(c) for c in row) for row in rng.integers(0, CODES, (n_items - len(tuples), LEVELS)))
    return [[first + lvl * CODES + c for lvl, c in enumerate(t)] for t in sorted(tuples)], first


def make_batches(rng, seqs, first, n_users, batch, history, pad, device):
    sep = first - 30
    rows = []
    for _ in range(n_users):
        head = rng.integers(100, first - 200, int(rng.integers(25, 36))).tolist()
        hist = [tok for i in rng.integers(0, len(seqs), history) for tok in (*seqs[i], sep)]
        rows.append(head + hist + rng.integers(100, first - 200, 10).tolist())
    out = []
    for start in range(0, n_users, batch):
        chunk = rows[start:start + batch]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for b, r in enumerate(chunk):  # left padding
            ids[b, width - len(r):], mask[b, width - len(r):] = torch.tensor(r), 1
        out.append({"input_ids": ids.to(device), "attention_mask": mask.to(device)})
    return out, float(np.mean([len(r) for r in rows]))


def build_model(args, eos, pad):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, max_position_embeddings=4096, pad_token_id=pad,
                      eos_token_id=eos, bos_token_id=pad, tie_word_embeddings=True)
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    return Qwen2ForCausalLM(cfg).eval().to(dev, dtype)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _clock(device):
    """CPU: this process's CPU time (1 torch thread: immune to other jobs sharing the cores); GPU: wall time."""
    return time.perf_counter() if torch.device(device).type == "cuda" else time.process_time()


def run_methods(model, trie, batches, methods, num_beams, top_k, device):
    """Interleaved timing; returns {method: (seconds, ranked lists)}."""
    seconds = {m: 0.0 for m in methods}
    ranked = {m: [] for m in methods}
    for i, batch in enumerate(batches):
        order = methods[i % len(methods):] + methods[:i % len(methods)]
        for m in order:
            width = batch["input_ids"].shape[1]
            kw = {"backend": "trie_beam"} if m == "c" else {"backend": "hf"}
            if m == "a":
                kw["logits_processor"] = PrefixConstrainedLogitsProcessor(
                    reference_prefix_allowed_tokens_fn(trie, width), num_beams=num_beams)
            _sync(device)
            t0 = _clock(device)
            r, _, n_invalid = generate_topk(model, batch, trie, num_beams=num_beams, top_k=top_k, prompt_len=width,
                                            return_scores=False, **kw)
            _sync(device)
            seconds[m] += _clock(device) - t0
            assert n_invalid == 0, (m, n_invalid)
            ranked[m] += r
    for m in methods[1:]:
        same = sum(x == y for x, y in zip(ranked[methods[0]], ranked[m]))
        assert same == len(ranked[m]), f"rankings of {m} and {methods[0]} differ for {len(ranked[m]) - same} users"
    return {m: (seconds[m], ranked[m]) for m in methods}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=152064)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=11008)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2, help="Qwen2.5-3B has 36")
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--curve-users", type=int, default=2, help="users per scaling point (0: no curves)")
    ap.add_argument("--methods", default="abc", help="methods of the main comparison (a, b, c; a and c required)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 model on cuda)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=None, help="write the raw figures as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("mmgenrec.evaluate.trie").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    first = args.vocab - LEVELS * CODES
    eos, pad = first - 20, first - 22
    t0 = time.perf_counter()
    model = build_model(args, eos, pad)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"device {args.device}; model {n_params / 1e6:.0f} M params (vocab {args.vocab}, hidden {args.hidden}, "
          f"{args.layers} layers, intermediate {args.intermediate}, {args.heads}/{args.kv_heads} heads), built in "
          f"{time.perf_counter() - t0:.1f} s\n")
    tries = {}

    def trie_for(n_items):
        if n_items not in tries:
            seqs, _ = make_items(np.random.default_rng(n_items), args.vocab, n_items)
            tries[n_items] = ItemTrie(seqs, eos_token_id=eos, pad_token_id=pad).to(args.device)
        return tries[n_items]

    # warm-up (allocator, kernels) on one user, not timed
    warm, _ = make_batches(rng, trie_for(args.items).seqs, first, 1, 1, 2, pad, args.device)
    run_methods(model, trie_for(args.items), warm, ["a", "b", "c"], args.beams, args.top_k, args.device)

    record = {"args": vars(args), "n_params": n_params}
    batches, mean_len = make_batches(rng, trie_for(args.items).seqs, first, args.users, args.batch, args.history, pad,
                                     args.device)
    methods = [m for m in "abc" if m in args.methods]
    res = run_methods(model, trie_for(args.items), batches, methods, args.beams, args.top_k, args.device)
    t = {m: res[m][0] for m in res}
    record["main"] = {"mean_prompt_tokens": mean_len, "seconds": t}
    print(f"end to end: {t['a'] / t['c']:.1f}x vs prefix_allowed_tokens_fn ({args.users} users in batches of "
          f"{args.batch}, {args.history}-item "
          f"history = {mean_len:.0f} prompt tokens, {args.beams} beams, {args.items} items, hidden {args.hidden}, "
          f"{args.layers} layers, vocab {args.vocab}, {args.device}); identical rankings\n")
    print("| method | seconds | users/s | vs (a) |")
    print("|---|---:|---:|---:|")
    for m, name in (("a", "(a) HF generate + prefix_allowed_tokens_fn"), ("b", "(b) HF generate + TrieLogitsProcessor"),
                    ("c", "(c) trie_beam_search")):
        if m not in t:
            continue
        print(f"| {name} | {t[m]:.2f} | {args.users / t[m]:.3f} | {t['a'] / t[m]:.2f}x |")

    if args.curve_users:
        points = [("history", h, dict(history=h)) for h in (5, 50)]
        points += [("beams", b, dict(beams=b)) for b in (10, 50)]
        points += [("items", n, dict(items=n)) for n in (1000, 100000)]
        print(f"\n## Scaling ({args.curve_users} users per point, batch {args.batch}; (a) and (c) interleaved; base "
              f"point {args.history}-item history, {args.beams} beams, {args.items} items)\n")
        print("| varied | value | prompt tokens | (a) s/user | (c) s/user | (a) / (c) |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| (base, from above) | | {mean_len:.0f} | {t['a'] / args.users:.2f} | {t['c'] / args.users:.2f} | "
              f"{t['a'] / t['c']:.1f}x |")
        record["curves"] = []
        for name, value, change in points:
            p = {"history": args.history, "beams": args.beams, "items": args.items, **change}
            trie = trie_for(p["items"])
            batches, mean_len = make_batches(rng, trie.seqs, first, args.curve_users, args.batch, p["history"], pad,
                                             args.device)
            res = run_methods(model, trie, batches, ["a", "c"], p["beams"], min(args.top_k, p["beams"]), args.device)
            ta, tc = (res[m][0] / args.curve_users for m in ("a", "c"))
            record["curves"].append({**p, "mean_prompt_tokens": mean_len, "a_s_per_user": ta, "c_s_per_user": tc})
            print(f"| {name} | {value} | {mean_len:.0f} | {ta:.2f} | {tc:.2f} | {ta / tc:.1f}x |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
