"""Constrained decoding cost: vectorised TrieLogitsProcessor vs the Python reference, at the real sizes.

Not a test. Real-size setting by default: vocab 152064 (Qwen2.5-VL), 10000 items x 4 levels x 256 codes (the item
tokens are the last 1024 rows, like added tokens), 20 beams x batch 8 = 160 score rows per step.

Part 1, masking cost per beam-search step (0..4 generated tokens). Each repeat copies the same log-softmax scores
into a preallocated buffer (as ``generate`` hands the processor a fresh log_softmax tensor), then times one call of

* reference: HF ``PrefixConstrainedLogitsProcessor`` + the Python dict trie (what ``prefix_allowed_tokens_fn`` does),
* vectorised: :class:`TrieLogitsProcessor` (one prefix-key ``searchsorted``, CSR gather, in-place fill + scatter).

The two are timed interleaved (reference, vectorised, reference, ...) so machine load hits both alike, and their
outputs must be bit-identical (asserted).

Part 2, end to end: users/s of :func:`generate_topk` on a random-init Qwen2 decoder with the real vocabulary
(small hidden size, so the constraint is a visible share), once with each processor; the ranked items must be
identical and the scores equal to 1e-5 (asserted). ``--e2e-hidden/--e2e-layers`` make the model bigger.

    PYTHONPATH=src python benchmarks/decode.py [--repeats 21] [--threads 1] [--users 48]

Use ``--threads 1`` on a shared CPU: with 2 OpenMP threads on an overloaded machine every parallel op pays
milliseconds of thread synchronisation, which swamps both methods' real cost.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time

import numpy as np
import torch
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from mmgenrec.evaluate.trie import ItemTrie, TrieLogitsProcessor, generate_topk, reference_prefix_allowed_tokens_fn


def make_items(rng, vocab, n_items, levels, codes):
    first = vocab - levels * codes  # item tokens are the last rows, like added tokens
    tuples = set()
    while len(tuples) < n_items:
        tuples.add(tuple(int(c) for c in rng.integers(0, codes, levels)))
    seqs = [[first + lvl * codes + c for lvl, c in enumerate(t)] for t in sorted(tuples)]
    return seqs, first


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def masking(args, rng, seqs, first, eos, pad):
    dev = torch.device(args.device)
    t0 = time.perf_counter()
    trie = ItemTrie(seqs, eos_token_id=eos, pad_token_id=pad).to(dev)
    compile_s = time.perf_counter() - t0
    rows = args.beams * args.batch
    reference = PrefixConstrainedLogitsProcessor(
        reference_prefix_allowed_tokens_fn(seqs, args.prompt_len, eos, pad), num_beams=args.beams)
    vectorised = TrieLogitsProcessor(trie, args.prompt_len)
    print(f"## Masking cost per step\n\nvocab {args.vocab}, {len(seqs)} items x {args.levels} levels x {args.codes} "
          f"codes ({trie.n_nodes} trie nodes, compiled in {compile_s:.2f} s), {args.beams} beams x batch "
          f"{args.batch} = {rows} rows, median of {args.repeats} interleaved repeats\n")
    print("| generated tokens | reference ms/step | vectorised ms/step | reference / vectorised |")
    print("|---|---:|---:|---:|")
    buf = torch.empty(rows, args.vocab, device=dev)
    tot_ref = tot_vec = 0.0
    for g in range(args.levels + 1):
        picks = rng.integers(0, len(seqs), rows)
        full = [seqs[i] + [eos] for i in picks]
        generated = torch.tensor([f[:g] for f in full], dtype=torch.long).reshape(rows, g)
        input_ids = torch.cat([torch.randint(0, first, (rows, args.prompt_len)), generated], dim=1).to(dev)
        base = torch.log_softmax(torch.randn(rows, args.vocab), dim=-1).to(dev)
        times = {"ref": [], "vec": []}
        for _ in range(args.repeats):
            for name, fn in (("ref", reference), ("vec", vectorised)):
                buf.copy_(base)
                _sync(dev)
                t0 = time.perf_counter()
                fn(input_ids, buf)
                _sync(dev)
                times[name].append(time.perf_counter() - t0)
        expected = reference(input_ids, base.clone())
        assert torch.equal(expected, vectorised(input_ids, base.clone())), f"outputs differ at step {g}"
        t_ref, t_vec = (1000 * statistics.median(times[k]) for k in ("ref", "vec"))
        tot_ref, tot_vec = tot_ref + t_ref, tot_vec + t_vec
        print(f"| {g} | {t_ref:.1f} | {t_vec:.2f} | {t_ref / t_vec:.1f}x |")
    print(f"| **all {args.levels + 1} steps** | **{tot_ref:.1f}** | **{tot_vec:.2f}** | **{tot_ref / tot_vec:.1f}x** |")
    fill = []
    for _ in range(args.repeats):
        buf.copy_(base)
        _sync(dev)
        t0 = time.perf_counter()
        buf.fill_(-float("inf"))
        _sync(dev)
        fill.append(time.perf_counter() - t0)
    print(f"\nFloor: one `fill_(-inf)` over the [{rows}, {args.vocab}] scores takes "
          f"{1000 * statistics.median(fill):.2f} ms; the vectorised step is that plus the lookup and the gather/scatter.")


def end_to_end(args, rng, seqs, first, eos, pad):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    dev = torch.device(args.device)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=args.vocab, hidden_size=args.e2e_hidden,
                      intermediate_size=args.e2e_intermediate or 2 * args.e2e_hidden,
                      num_hidden_layers=args.e2e_layers, num_attention_heads=args.e2e_heads,
                      num_key_value_heads=args.e2e_kv_heads,
                      max_position_embeddings=512, pad_token_id=pad, eos_token_id=eos, bos_token_id=pad,
                      tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg).eval().to(dev, torch.bfloat16 if dev.type == "cuda" else torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    trie = ItemTrie(seqs, eos_token_id=eos, pad_token_id=pad).to(dev)
    batches = []
    for _ in range(0, args.users, args.batch):
        ids = torch.randint(0, first - 100, (args.batch, args.prompt_len))
        mask = torch.ones_like(ids)
        for b in range(args.batch):  # left padding of random width
            n_pad = int(rng.integers(0, args.prompt_len // 2))
            ids[b, :n_pad], mask[b, :n_pad] = pad, 0
        batches.append({"input_ids": ids.to(dev), "attention_mask": mask.to(dev)})

    def run(kind):
        ranked, scores = [], []
        _sync(dev)
        t0 = time.perf_counter()
        for batch in batches:
            proc = [] if kind == "none" else None
            if kind == "reference":
                proc = PrefixConstrainedLogitsProcessor(
                    reference_prefix_allowed_tokens_fn(trie, args.prompt_len), num_beams=args.beams)
            r, s, n_invalid = generate_topk(model, batch, trie, num_beams=args.beams, top_k=10,
                                            prompt_len=args.prompt_len, logits_processor=proc)
            assert n_invalid == 0 or kind == "none"
            ranked += r
            scores += s
        _sync(dev)
        return time.perf_counter() - t0, ranked, scores

    logging.getLogger("mmgenrec.evaluate.trie").setLevel(logging.ERROR)  # unconstrained: "no valid items" warnings
    run("vectorised")  # warm-up
    results = {kind: run(kind) for kind in ("none", "reference", "vectorised")}
    (t_ref, r_ref, s_ref), (t_vec, r_vec, s_vec) = results["reference"], results["vectorised"]
    assert r_ref == r_vec, "ranked items differ"
    assert all(len(set(r)) == len(r) == 10 for r in r_vec)
    np.testing.assert_allclose(np.array(s_ref), np.array(s_vec), atol=1e-5, rtol=0)
    print(f"\n## End to end\n\n`generate_topk` on a random-init Qwen2 decoder ({n_params / 1e6:.1f} M params: vocab "
          f"{args.vocab}, hidden {args.e2e_hidden}, {args.e2e_layers} layers, tied embeddings), {args.users} users "
          f"in batches of {args.batch}, prompt {args.prompt_len} tokens (random left padding), {args.beams} beams, "
          f"top 10; identical ranked items and scores (1e-5) asserted\n")
    t_none = results["none"][0]
    print("| constraint | seconds | users/s | constraint overhead s (vs none) |")
    print("|---|---:|---:|---:|")
    for name, t in (("none (unconstrained: model + beam search only)", t_none),
                    ("reference (prefix_allowed_tokens_fn)", t_ref), ("vectorised (TrieLogitsProcessor)", t_vec)):
        print(f"| {name} | {t:.2f} | {args.users / t:.2f} | {t - t_none:+.2f} |")
    print(f"| **reference / vectorised** | **{t_ref / t_vec:.2f}x** | | "
          f"**{(t_ref - t_none) / max(t_vec - t_none, 1e-9):.1f}x** |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=152064)
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--users", type=int, default=32, help="end-to-end users (0 skips part 2)")
    ap.add_argument("--e2e-hidden", type=int, default=64)
    ap.add_argument("--e2e-layers", type=int, default=2)
    ap.add_argument("--e2e-heads", type=int, default=4)
    ap.add_argument("--e2e-kv-heads", type=int, default=2)
    ap.add_argument("--e2e-intermediate", type=int, default=0, help="0: 2 x hidden")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 model on cuda)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    seqs, first = make_items(rng, args.vocab, args.items, args.levels, args.codes)
    eos, pad = first - 20, first - 22
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"device {args.device}\n")
    masking(args, rng, seqs, first, eos, pad)
    if args.users:
        end_to_end(args, rng, seqs, first, eos, pad)


if __name__ == "__main__":
    main()
