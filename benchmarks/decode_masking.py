"""Per-step cost of trie-constrained masking: vectorised TrieLogitsProcessor vs the Python reference.

Not a test. Real-size setting: vocab 152000 (Qwen2.5-VL + item tokens), 10000 items x 4 levels x 256 codes,
20 beams x batch 8 = 160 rows per step. For each decoding step (0..4 generated tokens) it times

* reference: HF ``PrefixConstrainedLogitsProcessor`` + the Python dict trie (what ``prefix_allowed_tokens_fn`` does),
* vectorised: :class:`TrieLogitsProcessor` (gather allowed scores, fill -inf, scatter back; in place),
* bool mask: the same node lookup + a [rows, vocab] boolean mask built with scatter + ``masked_fill_``,

checks that all three give identical scores, and prints a Markdown table (median ms per step over the repeats).

    .venv/bin/python benchmarks/decode_masking.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from mmgenrec.evaluate.trie import ItemTrie, TrieLogitsProcessor, reference_prefix_allowed_tokens_fn


def bool_mask_processor(trie: ItemTrie, prompt_len: int):
    def call(input_ids, scores):
        allowed_tok = trie.allowed_tokens(input_ids[:, prompt_len:])
        allowed = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, allowed_tok, True)
        return scores.masked_fill_(~allowed, -float("inf"))

    return call


def timed(fn, input_ids, base_scores, repeats):
    times, out = [], None
    for _ in range(repeats):
        scores = base_scores.clone()
        t0 = time.perf_counter()
        out = fn(input_ids, scores)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=152000)
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    first_item_token = args.vocab - args.levels * args.codes  # item tokens are the last rows, like added tokens
    eos, pad = first_item_token - 20, first_item_token - 22
    codes = set()
    while len(codes) < args.items:
        codes.add(tuple(int(c) for c in rng.integers(0, args.codes, args.levels)))
    seqs = [[first_item_token + lvl * args.codes + c for lvl, c in enumerate(item)] for item in sorted(codes)]

    t0 = time.perf_counter()
    trie = ItemTrie(seqs, eos_token_id=eos, pad_token_id=pad)
    compile_s = time.perf_counter() - t0
    ref_fn = reference_prefix_allowed_tokens_fn(seqs, args.prompt_len, eos, pad)
    rows = args.beams * args.batch
    reference = PrefixConstrainedLogitsProcessor(ref_fn, num_beams=args.beams)
    vectorised = TrieLogitsProcessor(trie, args.prompt_len)
    boolmask = bool_mask_processor(trie, args.prompt_len)

    print(f"vocab {args.vocab}, {args.items} items x {args.levels} levels x {args.codes} codes "
          f"({trie.n_nodes} trie nodes, compiled in {compile_s:.2f} s), {args.beams} beams x batch {args.batch} = "
          f"{rows} rows, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, median of {args.repeats}\n")
    print("| generated tokens | reference ms/step | vectorised ms/step | bool-mask ms/step | reference / vectorised |")
    print("|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0]
    for g in range(args.levels + 1):
        picks = rng.integers(0, len(seqs), rows)
        generated = torch.tensor([seqs[i][:g] for i in picks], dtype=torch.long).reshape(rows, g)
        prompt = torch.randint(0, first_item_token, (rows, args.prompt_len))
        input_ids = torch.cat([prompt, generated], dim=1)
        base = torch.log_softmax(torch.randn(rows, args.vocab), dim=-1)
        t_ref, out_ref = timed(reference, input_ids, base, args.repeats)
        t_vec, out_vec = timed(vectorised, input_ids, base, args.repeats)
        t_bool, out_bool = timed(boolmask, input_ids, base, args.repeats)
        assert torch.equal(out_ref, out_vec) and torch.equal(out_ref, out_bool), f"outputs differ at step {g}"
        for i, t in enumerate((t_ref, t_vec, t_bool)):
            totals[i] += t
        print(f"| {g} | {t_ref:.1f} | {t_vec:.1f} | {t_bool:.1f} | {t_ref / t_vec:.1f}x |")
    print(f"| **all {args.levels + 1} steps** | **{totals[0]:.1f}** | **{totals[1]:.1f}** | **{totals[2]:.1f}** | "
          f"**{totals[0] / totals[1]:.1f}x** |")


if __name__ == "__main__":
    main()
