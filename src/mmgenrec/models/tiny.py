"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint locally (no hub, no download).

The result is an ordinary ``save_pretrained`` folder (config, weights, tokenizer, image/video processor, chat
template) that :func:`mmgenrec.models.loading.load_vlm` reads exactly as it reads the real 7B checkpoint. The
tokenizer is a byte-level BPE with Qwen2's pre-tokenizer, trained on a small corpus, and carries the real
Qwen2.5-VL special tokens, so prompts, chat template, image placeholders and padding behave as with the real model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch

from mmgenrec.io import atomic_dir

log = logging.getLogger(__name__)

# The real Qwen2.5-VL special tokens, in the real order (the real ids start at 151643).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Same rendering as the chat template shipped with Qwen2.5-VL-*-Instruct (images/videos as vision placeholders).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Train a byte-level BPE with Qwen2's pre-tokenizer and the Qwen2.5-VL special tokens."""
    from transformers import Qwen2Tokenizer

    base = Qwen2Tokenizer()
    tok = base.train_new_from_iterator(list(corpus), vocab_size=vocab_size, new_special_tokens=SPECIAL_TOKENS)
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.padding_side = "left"
    tok.model_max_length = 32768
    return tok


def build_tiny_qwen25vl(
    out_dir: str | Path,
    corpus: Iterable[str],
    *,
    vocab_size: int = 2000,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 256,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    vision_heads: int = 2,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
    tie_word_embeddings: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny random Qwen2.5-VL (model + processor + tokenizer) to ``out_dir`` and return the path.

    The vocabulary is padded to a multiple of 64 like the real checkpoint (152064 rows for 151665 tokens), so the
    "spare rows" situation of the real model is reproduced.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tok = build_tokenizer(corpus, vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = hidden_size // num_heads
    if head_dim % 8:
        raise ValueError(f"hidden_size/num_heads = {head_dim} must be a multiple of 8 (M-RoPE sections)")
    half = head_dim // 2  # mrope sections (temporal, height, width) must sum to head_dim / 2
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    padded_vocab = ((len(tok) + 63) // 64) * 64
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=padded_vocab, hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
            max_position_embeddings=4096, tie_word_embeddings=tie_word_embeddings,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope},
        ),
        vision_config=dict(
            depth=vision_depth, hidden_size=vision_hidden_size, num_heads=vision_heads,
            intermediate_size=2 * vision_hidden_size, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=56, out_hidden_size=hidden_size, fullatt_block_indexes=[vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=tie_word_embeddings,
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
    )
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    log.info("tiny Qwen2.5-VL: %d params, %d tokens, %d embedding rows -> %s", n_params, len(tok), padded_vocab, out_dir)
    return Path(out_dir)


def build_tiny_blip(
    out_dir: str | Path,
    corpus: Iterable[str],
    *,
    kind: str = "blip2",
    vocab_size: int = 600,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vision_hidden_size: int = 32,
    vision_layers: int = 1,
    qformer_layers: int = 1,
    num_query_tokens: int = 4,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write a tiny random BLIP-2 (``kind="blip2"``) or InstructBLIP (``"instructblip"``) with an OPT language
    model, a locally trained byte-level BPE (also used as the Q-Former tokenizer) and the stock processor.

    The folder loads with ``AutoModelForImageTextToText`` / ``AutoProcessor``, exactly like
    ``Salesforce/blip2-opt-2.7b`` or ``Salesforce/instructblip-vicuna-7b`` copied to a local path.
    """
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    if kind not in ("blip2", "instructblip"):
        raise ValueError(f"kind must be 'blip2' or 'instructblip', got {kind!r}")
    torch.manual_seed(seed)
    tok = build_tokenizer(corpus, vocab_size)
    tok.add_tokens(["<image>"], special_tokens=True)  # the processor's image placeholder
    image_token = tok.convert_tokens_to_ids("<image>")
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    vocab = ((len(tok) + 63) // 64) * 64
    text = dict(model_type="opt", vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=num_layers,
                ffn_dim=2 * hidden_size, num_attention_heads=num_heads, word_embed_proj_dim=hidden_size,
                max_position_embeddings=2048, pad_token_id=pad, eos_token_id=eos, bos_token_id=pad)
    vision = dict(hidden_size=vision_hidden_size, intermediate_size=2 * vision_hidden_size,
                  num_hidden_layers=vision_layers, num_attention_heads=num_heads, image_size=image_size,
                  patch_size=image_size // 2)
    qformer = dict(vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=qformer_layers,
                   num_attention_heads=num_heads, intermediate_size=2 * hidden_size,
                   encoder_hidden_size=vision_hidden_size, pad_token_id=pad)
    common = dict(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=num_query_tokens,
                  image_token_index=image_token)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    if kind == "blip2":
        model = Blip2ForConditionalGeneration(Blip2Config(**common))
        processor = Blip2Processor(image_processor=image_processor, tokenizer=tok, num_query_tokens=num_query_tokens)
    else:
        model = InstructBlipForConditionalGeneration(InstructBlipConfig(**common))
        processor = InstructBlipProcessor(image_processor=image_processor, tokenizer=tok, qformer_tokenizer=tok,
                                          num_query_tokens=num_query_tokens)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    log.info("tiny %s: %d params, %d tokens -> %s", kind, sum(p.numel() for p in model.parameters()), len(tok),
             out_dir)
    return Path(out_dir)


def build_tiny_qwen2(
    out_dir: str | Path,
    corpus: Iterable[str],
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    tie_word_embeddings: bool = True,
    chat_template: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny random text-only causal LM (``Qwen2ForCausalLM``) + tokenizer to ``out_dir``.

    It stands in for the LLaMA-family LLM of the text-only baselines (the text encoder of the ``lm_text`` view,
    LC-Rec's base model) and loads with ``AutoModel`` / ``AutoModelForCausalLM`` / ``AutoTokenizer`` like the
    real one. ``chat_template=False`` (default) leaves the tokenizer without a chat template, as a base LLaMA has:
    prompts then use the plain instruction template (:data:`mmgenrec.models.text_lm.PLAIN_TEMPLATE`); ``True``
    gives it the Qwen2 text chat template.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tok = build_tokenizer(corpus, vocab_size)
    tok.chat_template = TEXT_CHAT_TEMPLATE if chat_template else None
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2Config(
        vocab_size=((len(tok) + 63) // 64) * 64, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096, tie_word_embeddings=tie_word_embeddings,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("tiny Qwen2 LM: %d params, %d tokens -> %s", sum(p.numel() for p in model.parameters()), len(tok),
             out_dir)
    return Path(out_dir)


# Qwen2's text chat template (string contents only)
TEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
