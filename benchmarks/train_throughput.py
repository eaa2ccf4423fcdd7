"""Training throughput of Qwen2.5-VL at 3B size, random init (speed does not depend on the weights).

Same training step as the workflow: LoRA r=16 on the language model's 7 projections + trainable new item-token rows
(peft ``trainable_token_indices``), HF ``Trainer``, bf16 on GPU, optional gradient checkpointing, optionally
DeepSpeed ZeRO-2 (``config/deepspeed_zero2.json``). Batches are seqrec-like text of ``--seq-len`` tokens.

    python benchmarks/train_throughput.py --size 3b --steps 30                          # 1 GPU, plain
    torchrun --nproc_per_node 1 benchmarks/train_throughput.py --size 3b --steps 30 --deepspeed config/deepspeed_zero2.json
    python benchmarks/train_throughput.py --size tiny --steps 20 --device cpu           # smoke test on CPU

Prints one JSON line: tokens/s (after ``--warmup`` steps), MFU and peak GPU memory. MFU = model FLOP/s over the
GPU's peak bf16 FLOP/s (``--peak-tflops``, default 989 = H100 SXM dense); model FLOPs per token = 4 x LM params
(forward 2N + backward to the activations 2N: under LoRA the frozen base weights get no weight gradient; the
recomputation of gradient checkpointing is not counted); the vision tower is excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

SIZES = {  # Qwen2.5-VL-3B-Instruct text + vision config; "tiny" for a CPU smoke test
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, mrope=[16, 24, 24],
               vision=dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048)),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False, mrope=[16, 24, 24],
               vision=dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=3584)),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=2048, tie_word_embeddings=False, mrope=[4, 6, 6],
                 vision=dict(depth=1, hidden_size=64, num_heads=2, intermediate_size=128, out_hidden_size=128)),
}


def build_model(size: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    s = SIZES[size]
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
                         num_hidden_layers=s["num_hidden_layers"], num_attention_heads=s["num_attention_heads"],
                         num_key_value_heads=s["num_key_value_heads"], tie_word_embeddings=s["tie_word_embeddings"],
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": s["mrope"]}),
        vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[s["vision"]["depth"] - 1], **s["vision"]),
        tie_word_embeddings=s["tie_word_embeddings"],
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration(cfg).to(dtype)
    return model


class Batches(torch.utils.data.Dataset):
    def __init__(self, n, seq_len, vocab, answer_len=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(20, vocab, (n, seq_len), generator=g)
        self.answer_len = answer_len

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        ids = self.ids[i]
        labels = torch.full_like(ids, -100)
        labels[-self.answer_len:] = ids[-self.answer_len:]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
                "mm_token_type_ids": torch.zeros_like(ids)}


def main(argv=None):
    from peft import get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from mmgenrec.finetune.train import lora_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="3b")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=1024)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--deepspeed", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    args = ap.parse_args(argv)

    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    model = build_model(args.size, dtype)
    vocab = model.config.text_config.vocab_size
    n_params = sum(p.numel() for n, p in model.named_parameters() if "visual" not in n)
    new_ids = list(range(vocab - args.new_tokens, vocab))  # stand-ins for the item tokens (same shapes)
    is_tied = model.config.text_config.tie_word_embeddings
    model = get_peft_model(model, lora_config(new_ids, is_tied, 16, 64, 0.05))
    data = Batches(args.batch_size * (args.steps + 1), args.seq_len, vocab)
    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if on_gpu:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if on_gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                                  learning_rate=1e-4, bf16=on_gpu, use_cpu=not on_gpu, report_to=[], save_strategy="no",
                                  logging_steps=10**6, remove_unused_columns=False, deepspeed=args.deepspeed,
                                  activation_checkpointing=args.gradient_checkpointing,
                                  activation_checkpointing_kwargs={"use_reentrant": False}
                                  if args.gradient_checkpointing else None, disable_tqdm=True)
        Trainer(model=model, args=targs, train_dataset=data, callbacks=[Clock()]).train()
    steady = times[args.warmup:] or times
    tokens_per_s = args.batch_size * args.seq_len / (sum(steady) / len(steady))
    world = int(os.environ.get("WORLD_SIZE", 1))
    result = {
        "size": args.size, "device": torch.cuda.get_device_name() if on_gpu else "cpu", "dtype": str(dtype),
        "world_size": world, "deepspeed": args.deepspeed, "gradient_checkpointing": args.gradient_checkpointing,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "steps_timed": len(steady),
        "lm_params": n_params, "seconds_per_step": round(sum(steady) / len(steady), 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(4 * n_params * tokens_per_s / (args.peak_tflops * 1e12), 4) if on_gpu else None,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
