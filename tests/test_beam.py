"""trie_beam_search (prefill once, beams over the trie) against HF ``generate`` beam search with the trie processor,
on tiny random-init models: Qwen2, LLaMA, Qwen2.5-VL with images (config-built and the on-disk tiny checkpoint
with its real processor), T5. Expectation = HF's own beams (items and ``sequences_scores``), independent code."""

import random

import pytest
import torch
from PIL import Image

from mmgenrec.evaluate.beam import trie_beam_search
from mmgenrec.evaluate.trie import ItemTrie, generate_topk

PAD, EOS = 0, 1
TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def random_items(rng, first, last, depth, n_items, book_size=(2, 9)):
    books = [rng.sample(range(first, last), rng.randint(*book_size)) for _ in range(depth)]
    seqs = {tuple(rng.choice(b) for b in books) for _ in range(20 * n_items)}
    seqs = sorted(seqs)[:n_items]
    rng.shuffle(seqs)
    return [list(s) for s in seqs]


def left_padded(rng, vocab, batch, width, first=3):
    gen = torch.Generator().manual_seed(rng.randrange(10**6))
    ids = torch.randint(first, vocab, (batch, width), generator=gen)
    mask = torch.ones(batch, width, dtype=torch.long)
    for b in range(1, batch):  # row 0 unpadded, the others mixed prompt lengths
        n_pad = rng.randint(0, width - 2)
        ids[b, :n_pad], mask[b, :n_pad] = PAD, 0
    return {"input_ids": ids, "attention_mask": mask}


def canonical(trie, twins):
    """Item -> its token tuple with twin tokens identified (twins score identically by construction)."""
    return lambda item: tuple(twins.get(t, t) for t in trie.seqs[item])


def assert_same_beams(got, ref, key=None, tol=TOL):
    """Per user: the same scores (tol) rank by rank, and the same items; within a group of tied scores the order
    is free (topk tie-breaking), so each tie group is compared as a sorted list of ``key(item)``."""
    key = key or (lambda item: item)
    (r_got, s_got, inv_got), (r_ref, s_ref, _) = got, ref
    assert inv_got == 0
    assert len(r_got) == len(r_ref)
    for items, scores, ref_items, ref_scores in zip(r_got, s_got, r_ref, s_ref):
        assert len(items) == len(ref_items) == len(set(items)) and len(scores) == len(items)
        torch.testing.assert_close(torch.tensor(scores), torch.tensor(ref_scores), atol=tol, rtol=0)
        start = 0
        for i in range(1, len(items) + 1):
            if i == len(items) or abs(ref_scores[i] - ref_scores[start]) > tol:
                assert sorted(map(key, items[start:i])) == sorted(map(key, ref_items[start:i])), (start, i)
                start = i


def both(model, batch, trie, num_beams, top_k, **kw):
    ours = generate_topk(model, dict(batch), trie, num_beams=num_beams, top_k=top_k, backend="trie_beam", **kw)
    hf = generate_topk(model, dict(batch), trie, num_beams=num_beams, top_k=top_k, backend="hf", **kw)
    return ours, hf


def qwen2(vocab=300, seed=0, tie=True, cls="qwen2"):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if cls == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    cfg = config_cls(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                     pad_token_id=PAD, eos_token_id=EOS, bos_token_id=2, tie_word_embeddings=tie)
    model = model_cls(cfg).eval()
    with torch.no_grad():  # a peakier distribution than the N(0, 0.02) init: scores spread, fewer near-ties
        model.get_output_embeddings().weight.mul_(20)
    return model


# ------------------------------------------------------------------------------------------------ decoder-only
@pytest.mark.parametrize("seed", range(6))
def test_matches_hf_on_random_tries_decoder_only(seed):
    rng = random.Random(seed)
    vocab = 300
    model = qwen2(vocab, seed=seed, cls="qwen2" if seed % 3 else "llama")
    depth = rng.choice([2, 3, 4, 5])
    trie = ItemTrie(random_items(rng, 3, vocab, depth, rng.randint(20, 150)), eos_token_id=EOS, pad_token_id=PAD)
    width = rng.randint(4, 12)
    batch = left_padded(rng, vocab, rng.randint(1, 4), width)
    num_beams = rng.choice([4, 8, 16])
    top_k = min(num_beams, len(trie))
    ours, hf = both(model, batch, trie, num_beams, top_k, prompt_len=width)
    assert_same_beams(ours, hf)


def test_prefill_runs_once_and_beams_follow_one_token_per_step():
    rng = random.Random(5)
    model = qwen2()
    trie = ItemTrie(random_items(rng, 3, 300, 4, 60), eos_token_id=EOS, pad_token_id=PAD)
    batch = left_padded(rng, 300, 3, 10)
    shapes = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        res = trie_beam_search(model, batch, trie, num_beams=7)
    finally:
        hook.remove()
    # the 3 prompts once (not 3 x 7), then one token per beam for the L item levels (levels 2..L and the EOS step)
    assert shapes == [(3, 10)] + [(21, 1)] * 4
    assert res.tokens.shape == (3, 7, 4) and res.scores.shape == (3, 7)
    assert all(trie.item_of(t) is not None for t in res.tokens.reshape(-1, 4))
    assert (res.scores[:, :-1] >= res.scores[:, 1:]).all()


def test_more_beams_than_items_under_a_prefix_and_in_total():
    rng = random.Random(2)
    model = qwen2(seed=3)
    batch = left_padded(rng, 300, 3, 7)
    # 2 first tokens for 12 beams; the second level has 3-4 children per prefix: beams > items under a prefix
    seqs = [[10 + a, 20 + b, 30 + c] for a in range(2) for b in range(3 + a) for c in range(2)]
    trie = ItemTrie(seqs, eos_token_id=EOS, pad_token_id=PAD)
    ours, hf = both(model, batch, trie, 12, 12, prompt_len=7)
    assert_same_beams(ours, hf)
    # 5 items in total, 8 beams: every item once with HF's score, nothing invented
    small = ItemTrie(seqs[:5], eos_token_id=EOS, pad_token_id=PAD)
    ours = generate_topk(model, dict(batch), small, num_beams=8, top_k=5, prompt_len=7)
    hf = generate_topk(model, dict(batch), small, num_beams=8, top_k=5, prompt_len=7, backend="hf")
    assert all(sorted(r) == [0, 1, 2, 3, 4] for r in ours[0])
    assert_same_beams(ours, (hf[0], hf[1], 0))


@pytest.mark.parametrize("seed", range(3))
def test_exact_ties_from_twin_tokens(seed):
    """Two tokens with identical input and output embeddings, and a trie symmetric in them: every item with one
    has a twin with the other and the same score, also at the beam cut. Both searches return the same scores and
    the same items up to twin swaps within a tie group."""
    rng = random.Random(40 + seed)
    vocab = 300
    model = qwen2(vocab, seed=seed, tie=False)
    base = random_items(rng, 5, vocab, 3, 40)
    a, b = base[0][1], 4  # token 4 occurs in no random item: the twin of a (second level)
    with torch.no_grad():
        model.get_input_embeddings().weight[b] = model.get_input_embeddings().weight[a]
        model.get_output_embeddings().weight[b] = model.get_output_embeddings().weight[a]
    seqs = {tuple(s) for s in base} | {(s[0], b, s[2]) for s in base if s[1] == a}
    trie = ItemTrie(sorted(seqs), eos_token_id=EOS, pad_token_id=PAD)
    batch = left_padded(rng, vocab, 3, 8)
    ours, hf = both(model, batch, trie, 10, 10, prompt_len=8)
    assert_same_beams(ours, hf, key=canonical(trie, {b: a}))
    n_twins = sum(1 for s in seqs if s[1] == b)
    assert n_twins >= 1


def test_peft_wrapped_and_generation_config_ignored():
    from peft import LoraConfig, get_peft_model

    rng = random.Random(9)
    trie = ItemTrie(random_items(rng, 3, 300, 3, 50), eos_token_id=EOS, pad_token_id=PAD)
    batch = left_padded(rng, 300, 2, 6)
    plain = generate_topk(qwen2(), dict(batch), trie, num_beams=6, top_k=6, prompt_len=6, backend="hf")
    wrapped = get_peft_model(qwen2(), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    wrapped.generation_config.repetition_penalty = 3.0
    ours = generate_topk(wrapped, dict(batch), trie, num_beams=6, top_k=6, prompt_len=6)  # LoRA B = 0
    assert_same_beams(ours, plain)


def test_backend_errors():
    trie = ItemTrie([[10, 20], [11, 20]], eos_token_id=EOS, pad_token_id=PAD)
    batch = left_padded(random.Random(0), 300, 1, 4)
    with pytest.raises(ValueError, match="backend"):
        generate_topk(qwen2(), batch, trie, num_beams=2, top_k=2, backend="beam")
    with pytest.raises(ValueError, match="logits_processor"):
        generate_topk(qwen2(), batch, trie, num_beams=2, top_k=2, backend="trie_beam", logits_processor=[])


# ------------------------------------------------------------------------------------------------ T5
@pytest.mark.parametrize("seed", range(3))
def test_matches_hf_t5(seed):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    vocab = 200
    cfg = T5Config(vocab_size=vocab, d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16,
                   decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS, tie_word_embeddings=False)
    model = T5ForConditionalGeneration(cfg).eval()
    rng = random.Random(70 + seed)
    trie = ItemTrie(random_items(rng, 3, vocab, rng.choice([3, 4]), rng.randint(20, 100)), eos_token_id=EOS,
                    pad_token_id=PAD)
    ids = torch.randint(3, vocab, (3, 9))
    mask = torch.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = PAD, 0  # encoder side: right padding, mixed lengths
    ids[2, 3:], mask[2, 3:] = PAD, 0
    batch = {"input_ids": ids, "attention_mask": mask}
    ours, hf = both(model, batch, trie, 8, 8)
    assert_same_beams(ours, hf)
    assert generate_topk(model, dict(batch), trie, num_beams=8, top_k=8, prompt_len=1)[0] == ours[0]


# ------------------------------------------------------------------------------------------------ Qwen2.5-VL
def test_matches_hf_tiny_qwen25vl_checkpoint_with_images(tiny):
    """The on-disk tiny Qwen2.5-VL with its processor: chat-template prompts with images of different sizes and
    texts of different lengths (left padding), M-RoPE positions and rope_deltas."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    processor = AutoProcessor.from_pretrained(tiny)
    processor.tokenizer.padding_side = "left"
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rng = random.Random(3)
    vocab = len(processor.tokenizer)
    trie = ItemTrie(random_items(rng, 20, vocab - 20, 4, 120), eos_token_id=eos,
                    pad_token_id=processor.tokenizer.pad_token_id)
    prompts, images = [], []
    for i, (side, words) in enumerate([(56, 3), (84, 12), (112, 6)]):
        pixels = torch.Generator().manual_seed(i)
        images.append(Image.fromarray(torch.randint(0, 255, (side, side, 3), generator=pixels,
                                                    dtype=torch.uint8).numpy()))
        text = " ".join(["guitar", "strings", "music", "red"] * 4)[: 6 * words]
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    batch = dict(processor(text=prompts, images=images, padding=True, return_tensors="pt"))
    assert (batch["attention_mask"] == 0).any()  # mixed prompt lengths
    width = batch["input_ids"].shape[1]
    ours = generate_topk(model, dict(batch), trie, num_beams=10, top_k=10, prompt_len=width)
    assert (model.model.rope_deltas != 0).all()  # M-RoPE: image tokens shift the text positions (3D path taken)
    hf = generate_topk(model, dict(batch), trie, num_beams=10, top_k=10, prompt_len=width, backend="hf")
    assert_same_beams(ours, hf)


def test_length_penalty_scores_like_hf_finished_beams():
    """HF divides a finished beam's summed log-probs by (generated length) ** length_penalty; every answer is L
    item tokens + EOS, so HF's sequences_scores with length_penalty=1.0 are the per-token means."""
    from transformers import LogitsProcessorList

    from mmgenrec.evaluate.trie import TrieLogitsProcessor, constrained_generation_config

    rng = random.Random(12)
    model = qwen2(seed=4)
    trie = ItemTrie(random_items(rng, 3, 300, 3, 60), eos_token_id=EOS, pad_token_id=PAD)
    batch = left_padded(rng, 300, 2, 6)
    config = constrained_generation_config(num_beams=6, max_new_tokens=trie.depth + 1, eos_token_id=EOS,
                                           pad_token_id=PAD)
    config.length_penalty = 1.0
    out = model.generate(**batch, generation_config=config,
                         logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie, 6)]))
    ours = trie_beam_search(model, batch, trie, num_beams=6, length_penalty=1.0)
    torch.testing.assert_close(ours.scores.reshape(-1), out.sequences_scores, atol=TOL, rtol=0)
    assert torch.equal(ours.tokens.reshape(12, -1), out.sequences[:, 6:6 + trie.depth])
