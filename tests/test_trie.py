"""ItemTrie / TrieLogitsProcessor / generate_topk against the slow Python-dict reference and HF's own
``prefix_allowed_tokens_fn`` path, on tiny random-init models built from config (no files, no downloads)."""

import random

import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from mmgenrec.evaluate.trie import (
    ItemTrie,
    TrieLogitsProcessor,
    generate_topk,
    reference_prefix_allowed_tokens_fn,
)

PAD, EOS = 0, 1


def random_items(rng: random.Random, vocab: int, depth: int, n_items: int, first_token: int = 2):
    """Distinct item sequences; each level draws from its own small codebook so prefixes are shared."""
    books = [rng.sample(range(first_token, vocab), rng.randint(2, min(12, vocab - first_token)))
             for _ in range(depth)]
    seqs = set()
    for _ in range(20 * n_items):
        seqs.add(tuple(rng.choice(book) for book in books))
        if len(seqs) == n_items:
            break
    seqs = [list(s) for s in seqs]
    rng.shuffle(seqs)
    return seqs


# ------------------------------------------------------------------------------------------------ construction
def test_item_trie_basics_and_errors():
    trie = ItemTrie([[5, 6, 7], [5, 6, 8], [9, 6, 7]], eos_token_id=EOS, pad_token_id=PAD)
    assert trie.depth == 3 and len(trie) == 3 and trie.eos_token_id == EOS
    assert trie.item_of([5, 6, 8]) == 1
    assert trie.item_of(torch.tensor([9, 6, 7])) == 2
    assert trie.item_of([5, 6]) is None and trie.item_of([5, 6, 9]) is None
    assert trie.to("cpu") is trie
    with pytest.raises(ValueError, match="same length"):
        ItemTrie([[5, 6, 7], [5, 6]], eos_token_id=EOS)
    with pytest.raises(ValueError, match="items 0 and 2"):
        ItemTrie([[5, 6, 7], [5, 6, 8], [5, 6, 7]], eos_token_id=EOS)
    with pytest.raises(ValueError, match="eos"):
        ItemTrie([[5, 6, 7], [5, EOS, 8]], eos_token_id=EOS)
    with pytest.raises(ValueError):
        ItemTrie([], eos_token_id=EOS)


# ------------------------------------------------------------------------------- vectorised vs Python reference
def _partial_beams(rng, seqs, vocab, depth, n_generated, finish, n_rows):
    rows = []
    for _ in range(n_rows):
        item = list(rng.choice(seqs))
        full = item + [EOS] + [rng.choice(finish) for _ in range(max(0, n_generated - depth - 1))]
        row = full[:n_generated]
        kind = rng.random()
        if kind < 0.3 and n_generated:  # corrupt one position (may or may not still be valid)
            row[rng.randrange(n_generated)] = rng.randrange(vocab)
        elif kind < 0.4:  # fully random
            row = [rng.randrange(vocab) for _ in range(n_generated)]
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_processor_matches_reference_on_random_tries(seed):
    rng = random.Random(seed)
    vocab = rng.randint(50, 300)
    depth = rng.choice([3, 4])
    seqs = random_items(rng, vocab, depth, rng.randint(1, 150))
    pad = rng.choice([PAD, EOS, None])
    trie = ItemTrie(seqs, eos_token_id=EOS, pad_token_id=pad)
    finish = [EOS] if pad is None else sorted({EOS, pad})
    prompt_len = rng.randint(0, 5)
    ref_fn = reference_prefix_allowed_tokens_fn(seqs, prompt_len, EOS, pad)
    proc = TrieLogitsProcessor(trie, prompt_len)
    n_scores = vocab + rng.choice([0, 7])  # model vocab may be padded beyond the tokenizer
    for n_generated in range(depth + 3):
        n_rows = 24
        generated = torch.tensor(_partial_beams(rng, seqs, vocab, depth, n_generated, finish, n_rows),
                                 dtype=torch.long).reshape(n_rows, n_generated)
        prompt = torch.randint(0, vocab, (n_rows, prompt_len))
        input_ids = torch.cat([prompt, generated], dim=1)
        scores = torch.randn(n_rows, n_scores)
        # HF's own processor around the reference function: one batch with n_rows beams
        expected = PrefixConstrainedLogitsProcessor(ref_fn, num_beams=n_rows)(input_ids, scores.clone())
        got_buffer = scores.clone()
        got = proc(input_ids, got_buffer)
        assert got is got_buffer  # in place
        assert torch.equal(got, expected)
        for r in range(n_rows):
            allowed = torch.isfinite(got[r]).nonzero().flatten().tolist()
            assert allowed == ref_fn(0, input_ids[r])


@pytest.mark.parametrize("seed", range(10))
def test_single_lookup_nodes_equal_stepwise_walk(seed):
    rng = random.Random(1000 + seed)
    vocab = rng.randint(50, 400)
    depth = rng.choice([2, 3, 4, 5])
    seqs = random_items(rng, vocab, depth, rng.randint(1, 200))
    pad = rng.choice([PAD, None])
    trie = ItemTrie(seqs, eos_token_id=EOS, pad_token_id=pad)
    assert trie._fast
    finish = [EOS] if pad is None else sorted({EOS, pad})
    for g in range(depth + 3):
        rows = _partial_beams(rng, seqs, vocab, depth, g, finish, 40)
        gen = torch.tensor(rows, dtype=torch.long).reshape(40, g)
        if g:
            gen[0, :] = -3  # out-of-range ids (never produced by generate) must land on DEAD, not crash
        clean = torch.where((gen < 0) | (gen > trie.max_token_id), trie._radix - 1, gen)
        assert torch.equal(trie.nodes(gen), trie._nodes_stepwise(clean))
        if g:
            assert trie.nodes(gen)[0] == trie.dead_node


# ------------------------------------------------------------------------------------------------ end to end
def _qwen2(vocab=300, seed=0, **gen):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=PAD, eos_token_id=EOS, bos_token_id=2)
    model = Qwen2ForCausalLM(cfg).eval()
    for k, v in gen.items():
        setattr(model.generation_config, k, v)
    return model


def _left_padded(rng, vocab, batch, width):
    ids = torch.randint(3, vocab, (batch, width), generator=torch.Generator().manual_seed(rng.randrange(10**6)))
    mask = torch.ones(batch, width, dtype=torch.long)
    for b in range(batch):
        n_pad = rng.randint(0, width - 2)
        ids[b, :n_pad], mask[b, :n_pad] = PAD, 0
    return {"input_ids": ids, "attention_mask": mask}


def _hf_reference(model, batch, trie, num_beams, top_k, prompt_len):
    """Plain HF beam search with prefix_allowed_tokens_fn; sequences -> distinct items in beam order."""
    config = GenerationConfig(num_beams=num_beams, num_return_sequences=num_beams, max_new_tokens=trie.depth + 1,
                              do_sample=False, early_stopping=True, length_penalty=0.0, eos_token_id=EOS,
                              pad_token_id=PAD, output_scores=True, return_dict_in_generate=True)
    out = model.generate(**batch, generation_config=config,
                         prefix_allowed_tokens_fn=reference_prefix_allowed_tokens_fn(trie, prompt_len))
    gen = out.sequences[:, prompt_len: prompt_len + trie.depth]
    ranked, scores = [], []
    for b in range(gen.shape[0] // num_beams):
        items, vals = [], []
        for r in range(b * num_beams, (b + 1) * num_beams):
            item = trie.item_of(gen[r])
            if item is not None and item not in items and len(items) < top_k:
                items.append(item)
                vals.append(out.sequences_scores[r].item())
        ranked.append(items)
        scores.append(vals)
    return ranked, scores


def _assert_same(got, ref, top_k):
    ranked, scores, n_invalid = got
    assert n_invalid == 0
    assert ranked == ref[0]
    for r, s, rs in zip(ranked, scores, ref[1]):
        assert len(r) == top_k and len(set(r)) == top_k
        torch.testing.assert_close(torch.tensor(s), torch.tensor(rs), atol=1e-5, rtol=0)
        assert s == sorted(s, reverse=True)


@pytest.mark.parametrize("seed", range(3))
def test_generate_topk_matches_hf_prefix_fn_decoder_only(seed):
    rng = random.Random(100 + seed)
    vocab = 300
    model = _qwen2(vocab, seed=seed)
    depth = rng.choice([3, 4])
    trie = ItemTrie(random_items(rng, vocab, depth, rng.randint(30, 80), first_token=3), eos_token_id=EOS,
                    pad_token_id=PAD)
    batch = _left_padded(rng, vocab, batch=4, width=9)
    num_beams, top_k = 8, 5
    got = generate_topk(model, batch, trie, num_beams=num_beams, top_k=top_k, prompt_len=9, eos_token_id=EOS,
                        pad_token_id=PAD)
    _assert_same(got, _hf_reference(model, batch, trie, num_beams, top_k, 9), top_k)
    no_scores = generate_topk(model, batch, trie, num_beams=num_beams, top_k=top_k, prompt_len=9,
                              return_scores=False)  # no per-step score copies: same ranking
    assert no_scores[0] == got[0] and no_scores[1] == [[]] * len(got[0]) and no_scores[2] == 0
    # unconstrained decoding of a random model mostly misses the item set: invalid beams are counted
    _, _, n_invalid = generate_topk(model, batch, trie, num_beams=num_beams, top_k=top_k, prompt_len=9,
                                    logits_processor=[])
    assert n_invalid > 0


def test_model_generation_config_does_not_leak():
    rng = random.Random(7)
    vocab = 300
    trie = ItemTrie(random_items(rng, vocab, 4, 60, first_token=3), eos_token_id=EOS, pad_token_id=PAD)
    batch = _left_padded(rng, vocab, batch=3, width=8)
    plain = generate_topk(_qwen2(vocab), batch, trie, num_beams=10, top_k=10, prompt_len=8)
    some_item_token = trie.seqs[0][0]
    leaky = _qwen2(vocab, do_sample=True, temperature=0.01, top_k=1, top_p=0.5, repetition_penalty=2.0,
                   no_repeat_ngram_size=1, suppress_tokens=[some_item_token], length_penalty=3.0,
                   eos_token_id=[EOS, 2], max_new_tokens=1, num_beams=1)
    saved = leaky.generation_config
    got = generate_topk(leaky, batch, trie, num_beams=10, top_k=10, prompt_len=8)
    assert leaky.generation_config is saved and leaky.generation_config.repetition_penalty == 2.0  # restored
    assert got[0] == plain[0] and got[2] == 0
    torch.testing.assert_close(torch.tensor(got[1]), torch.tensor(plain[1]), atol=1e-5, rtol=0)


def test_peft_wrapped_model():
    from peft import LoraConfig, get_peft_model

    rng = random.Random(3)
    vocab = 300
    trie = ItemTrie(random_items(rng, vocab, 3, 40, first_token=3), eos_token_id=EOS, pad_token_id=PAD)
    batch = _left_padded(rng, vocab, batch=2, width=6)
    plain = generate_topk(_qwen2(vocab), batch, trie, num_beams=6, top_k=4, prompt_len=6)
    peft_model = get_peft_model(_qwen2(vocab, repetition_penalty=3.0),
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    got = generate_topk(peft_model, batch, trie, num_beams=6, top_k=4, prompt_len=6)  # LoRA B = 0: same model
    assert got[0] == plain[0] and got[2] == 0
    torch.testing.assert_close(torch.tensor(got[1]), torch.tensor(plain[1]), atol=1e-5, rtol=0)


def test_fewer_items_than_beams_is_robust(caplog):
    rng = random.Random(11)
    vocab = 300
    trie = ItemTrie([[10, 20, 30], [10, 21, 30], [11, 20, 30]], eos_token_id=EOS, pad_token_id=PAD)
    batch = _left_padded(rng, vocab, batch=2, width=5)
    ranked, scores, _ = generate_topk(_qwen2(vocab), batch, trie, num_beams=6, top_k=5, prompt_len=5)
    for r in ranked:
        assert sorted(r) == [0, 1, 2]  # every item once, nothing invented
    assert "only 3 distinct valid items" in caplog.text
    with pytest.raises(ValueError, match="num_beams"):
        generate_topk(_qwen2(vocab), batch, trie, num_beams=4, top_k=5, prompt_len=5)
    with pytest.raises(ValueError, match="prompt_len"):
        generate_topk(_qwen2(vocab), batch, trie, num_beams=6, top_k=5, prompt_len=4)


@pytest.mark.parametrize("seed", range(4))
def test_generate_topk_t5_encoder_decoder(seed):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    vocab = 200
    cfg = T5Config(vocab_size=vocab, d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16,
                   decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
    model = T5ForConditionalGeneration(cfg).eval()
    model.generation_config.repetition_penalty = 2.0  # must not leak either
    rng = random.Random(5 + seed)
    trie = ItemTrie(random_items(rng, vocab, rng.choice([3, 4]), rng.randint(20, 80), first_token=3),
                    eos_token_id=EOS, pad_token_id=PAD)
    ids = torch.randint(3, vocab, (3, 7))
    mask = torch.ones_like(ids)
    ids[0, 5:], mask[0, 5:] = PAD, 0  # encoder side: right padding is fine
    batch = {"input_ids": ids, "attention_mask": mask}
    got = generate_topk(model, batch, trie, num_beams=8, top_k=6, prompt_len=1)
    assert generate_topk(model, batch, trie, num_beams=8, top_k=6)[0] == got[0]  # prompt_len defaults to 1
    model.generation_config.repetition_penalty = 1.0
    _assert_same(got, _hf_reference(model, batch, trie, 8, 6, 1), 6)


@pytest.mark.parametrize("seed", range(4))
def test_generate_topk_tiny_qwen25vl_with_images(seed):
    """The real model class: M-RoPE positions, image features, rope_deltas cache, left padding, beam expansion."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    vocab, img_tok, v_start, v_end = 256, 250, 251, 252
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                         bos_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD),
        vision_config=dict(depth=1, hidden_size=16, num_heads=2, intermediate_size=32, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=56, out_hidden_size=32,
                           fullatt_block_indexes=[0]),
        image_token_id=img_tok, video_token_id=253, vision_start_token_id=v_start, vision_end_token_id=v_end,
        bos_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.generation_config.do_sample, model.generation_config.top_k = True, 1
    rng = random.Random(9 + seed)
    trie = ItemTrie(random_items(rng, 240, rng.choice([3, 4]), rng.randint(20, 90), first_token=3),
                    eos_token_id=EOS, pad_token_id=PAD)
    # two prompts, one 4x4-patch image each (4 merged image tokens), different text lengths -> left padding
    rows, width = [], 14
    for n_text in (3, rng.randint(4, 7)):
        text = torch.randint(3, 240, (n_text,)).tolist()
        rows.append([v_start] + [img_tok] * 4 + [v_end] + text)
    ids = torch.full((2, width), PAD)
    mask = torch.zeros(2, width, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, width - len(row):] = torch.tensor(row)
        mask[b, width - len(row):] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": (ids == img_tok).int(),
             "pixel_values": torch.randn(2 * 16, 3 * 2 * 14 * 14), "image_grid_thw": torch.tensor([[1, 4, 4]] * 2)}
    got = generate_topk(model, dict(batch), trie, num_beams=6, top_k=5, prompt_len=width)
    model.generation_config.do_sample = False
    _assert_same(got, _hf_reference(model, dict(batch), trie, 6, 5, width), 5)
