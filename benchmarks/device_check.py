"""Every GPU figure the benchmark pages leave empty, in one run: one JSON and one markdown result.

Figures (each from the benchmark script the page names, run as a subprocess with a time limit, or measured here):

* ``train_plain`` / ``train_deepspeed``: random-init Qwen2.5-VL-3B-shape LoRA + item-row training, tokens/s, MFU,
  peak GiB (``benchmarks/train_throughput.py``; the DeepSpeed run under ``torchrun``, ZeRO-2
  ``config/deepspeed_zero2.json``, skipped with the reason where deepspeed is not installed);
* ``decode``: users/s of HF generate with the reference constraint, with our processor, and of our trie beam
  search, 3B-shape decoder (``benchmarks/decode.py``'s main comparison);
* ``rqvae_epoch``: RQ-VAE epoch at 6,250 x 3,584 (``benchmarks/rqvae_epoch.py``), LC-Rec's detached residual;
* ``embed_batch1_fp32`` / ``embed_batched_bf16``: items/s of :func:`mmgenrec.embed.embed.embed_batch` (image +
  text items, content pooling) at batch 1 in fp32 vs the workflow's batched bf16 path, 3B shape.

``--tiny`` runs all of it on the CPU at toy sizes in well under a minute (what the test runs); the default sizes
are meant for one H100/H200 in under 9 minutes (``benchmarks/device_check.sh``).

    PYTHONPATH=src python benchmarks/device_check.py --out device_check            # GPU
    PYTHONPATH=src python benchmarks/device_check.py --tiny --out /tmp/dc           # CPU smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIGURES = ("train_plain", "train_deepspeed", "decode", "rqvae_epoch", "embed_batch1_fp32", "embed_batched_bf16")

# 3B shapes (Qwen2.5-VL-3B-Instruct) and the tiny CPU shapes
SHAPES = {
    "3b": dict(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008, vocab=151936, mrope=[16, 24, 24],
               vision=dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420)),
    "tiny": dict(hidden=64, layers=2, heads=2, kv_heads=1, intermediate=128, vocab=2048, mrope=[4, 6, 6],
                 vision=dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64)),
}


def settings(tiny: bool) -> dict:
    if tiny:
        return {
            "train": ["--size", "tiny", "--steps", "3", "--warmup", "1", "--batch-size", "2", "--seq-len", "32",
                      "--new-tokens", "16", "--device", "cpu"],
            "decode": ["--vocab", "4096", "--hidden", "32", "--intermediate", "64", "--heads", "2", "--kv-heads", "1",
                       "--layers", "1", "--items", "300", "--history", "5", "--beams", "10", "--top-k", "5",
                       "--users", "4", "--batch", "2", "--curve-users", "0", "--device", "cpu", "--threads", "1"],
            "rqvae": ["--items", "300", "--dim", "64", "--epochs", "2", "--batch-size", "128", "--codebook-size", "16",
                      "--hidden", "32", "--latent-dim", "8", "--device", "cpu", "--threads", "1"],
            "embed": {"shape": "tiny", "items": 8, "batch": 4, "image_side": 112, "device": "cpu"},
            "timeout": 300,
        }
    return {
        "train": ["--size", "3b", "--steps", "20", "--warmup", "5", "--batch-size", "8", "--seq-len", "512"],
        "decode": ["--layers", "36", "--users", "32", "--batch", "8", "--curve-users", "0", "--device", "cuda"],
        "rqvae": ["--epochs", "10", "--device", "cuda"],
        "embed": {"shape": "3b", "items": 64, "batch": 16, "image_side": 448, "device": "cuda"},
        "timeout": 240,
    }


def run_script(cmd: list[str], timeout: int) -> tuple[str | None, dict]:
    """Run ``cmd`` from the repository root; return (stdout, facts) with facts = seconds / error."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, {"error": f"timed out after {timeout} s", "seconds": round(time.perf_counter() - t0, 1)}
    facts = {"seconds": round(time.perf_counter() - t0, 1)}
    if proc.returncode != 0:
        facts["error"] = f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"
        return None, facts
    return proc.stdout, facts


def last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def decode_figures(record: dict) -> dict:
    """users/s of benchmarks/decode.py's main comparison (its --out JSON): (a) HF generate + the reference
    prefix_allowed_tokens_fn, (b) HF generate + our TrieLogitsProcessor, (c) our trie beam search."""
    main = record["main"]
    users = record["args"]["users"]
    names = {"a": "reference", "b": "vectorised", "c": "trie_beam"}
    out = {f"users_per_s_{names[m]}": round(users / sec, 4) for m, sec in main["seconds"].items()}
    if not {"users_per_s_reference", "users_per_s_trie_beam"} <= set(out):
        raise ValueError("decode.py wrote no (a) / (c) figures")
    out["ours_over_reference"] = round(out["users_per_s_trie_beam"] / out["users_per_s_reference"], 3)
    return out


def embed_throughput(shape: str, items: int, batch: int, image_side: int, device: str) -> dict:
    """items/s of embed_batch at batch 1 fp32 and at ``batch`` in bf16 (fp32 on CPU: no fast bf16 there)."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mmgenrec.data.synthetic import vocabulary_corpus
    from mmgenrec.embed.embed import embed_batch
    from mmgenrec.models.loading import load_processor
    from mmgenrec.models.tiny import build_tiny_qwen25vl

    s = SHAPES[shape]
    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer + processor of the tiny model (special tokens real)
        path = build_tiny_qwen25vl(Path(tmp) / "m", vocabulary_corpus(), vocab_size=600, hidden_size=64,
                                   num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, vision_depth=1,
                                   vision_hidden_size=32, max_pixels=image_side * image_side)
        processor = load_processor(path)
        special = json.loads((path / "config.json").read_text())
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                         num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                         num_key_value_heads=s["kv_heads"], tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": s["mrope"]}),
        vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           out_hidden_size=s["hidden"], fullatt_block_indexes=[s["vision"]["depth"] - 1],
                           **s["vision"]),
        **{k: special[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                   "vision_end_token_id")},
        tie_word_embeddings=True,
    )
    rng = np.random.default_rng(0)
    texts = [f"Guitar pedal number {i}. A compact distortion pedal for tone, metal case, 9V power. " * 3
             for i in range(items)]
    images = [Image.fromarray(rng.integers(0, 255, (image_side, image_side, 3), dtype=np.uint8)) for _ in range(items)]
    out = {}
    dev = torch.device(device)
    with dev:
        model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    for name, bs, dtype in (("embed_batch1_fp32", 1, torch.float32),
                            ("embed_batched_bf16", batch, torch.bfloat16 if dev.type == "cuda" else torch.float32)):
        model.to(dtype)
        embed_batch(model, processor, texts[:bs], images[:bs])  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for start in range(0, items, bs):
            vec = embed_batch(model, processor, texts[start:start + bs], images[start:start + bs])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        out[name] = {"items_per_s": round(items / sec, 2), "batch_size": bs, "dtype": str(dtype), "items": items,
                     "image_side": image_side, "dim": int(vec.shape[1]), "shape": shape,
                     "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda"
                     else None}
    return out


def check(tiny: bool) -> dict:
    cfg = settings(tiny)
    py, timeout = sys.executable, cfg["timeout"]
    figures: dict[str, dict] = {}

    stdout, facts = run_script([py, "benchmarks/train_throughput.py", *cfg["train"]], timeout)
    figures["train_plain"] = {**(last_json(stdout) if stdout else {}), **facts}
    if tiny:
        figures["train_deepspeed"] = {"skipped": "--tiny runs on the CPU; DeepSpeed ZeRO-2 needs a GPU"}
    elif importlib.util.find_spec("deepspeed") is None:
        figures["train_deepspeed"] = {"skipped": "deepspeed is not installed (pip install '.[deepspeed]')"}
    else:
        stdout, facts = run_script([py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                                    "benchmarks/train_throughput.py", *cfg["train"], "--deepspeed",
                                    "config/deepspeed_zero2.json"], timeout)
        figures["train_deepspeed"] = {**(last_json(stdout) if stdout else {}), **facts}

    decode_json = Path(tempfile.mkdtemp()) / "decode.json"
    stdout, facts = run_script([py, "benchmarks/decode.py", *cfg["decode"], "--out", str(decode_json)], timeout)
    figures["decode"] = {**(decode_figures(json.loads(decode_json.read_text())) if stdout else {}), **facts}

    stdout, facts = run_script([py, "benchmarks/rqvae_epoch.py", *cfg["rqvae"]], timeout)
    figures["rqvae_epoch"] = {**(last_json(stdout) if stdout else {}), **facts}

    try:
        figures.update(embed_throughput(**cfg["embed"]))
    except Exception as e:  # noqa: BLE001  (recorded, the other figures still count)
        figures["embed_batch1_fp32"] = figures["embed_batched_bf16"] = {"error": repr(e)[-1500:]}
    return figures


def markdown(result: dict) -> str:
    f = result["figures"]

    def val(fig, key, fmt="{}"):
        v = f.get(fig, {}).get(key)
        if v is None:
            return f.get(fig, {}).get("skipped") or f.get(fig, {}).get("error", "—")[:80]
        return fmt.format(v)

    lines = [f"# Device check ({'tiny, CPU' if result['tiny'] else 'GPU'})", "",
             f"{result['device']}; torch {result['torch']}; {result['date']}; total {result['seconds']} s", "",
             "| figure | value |", "|---|---|",
             f"| training tokens/s, plain | {val('train_plain', 'tokens_per_s')} |",
             f"| training MFU, plain | {val('train_plain', 'mfu')} |",
             f"| training peak GiB, plain | {val('train_plain', 'peak_mem_gib')} |",
             f"| training tokens/s, DeepSpeed ZeRO-2 | {val('train_deepspeed', 'tokens_per_s')} |",
             f"| training MFU, DeepSpeed ZeRO-2 | {val('train_deepspeed', 'mfu')} |",
             f"| training peak GiB, DeepSpeed ZeRO-2 | {val('train_deepspeed', 'peak_mem_gib')} |",
             f"| decoding users/s, reference constraint | {val('decode', 'users_per_s_reference')} |",
             f"| decoding users/s, HF generate + TrieLogitsProcessor | {val('decode', 'users_per_s_vectorised')} |",
             f"| decoding users/s, our trie beam search | {val('decode', 'users_per_s_trie_beam')} |",
             f"| RQ-VAE s/epoch | {val('rqvae_epoch', 'epoch_seconds_mean')} |",
             f"| embedding items/s, batch 1 fp32 | {val('embed_batch1_fp32', 'items_per_s')} |",
             f"| embedding items/s, batched bf16 | {val('embed_batched_bf16', 'items_per_s')} |", "",
             "Raw figures: the JSON file beside this one."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (seconds)")
    ap.add_argument("--out", default="device_check", help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no GPU visible; use --tiny for the CPU smoke run")
    t0 = time.time()
    figures = check(args.tiny)
    result = {"tiny": args.tiny, "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny
              else f"cpu ({platform.machine()})", "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(time.time() - t0, 1), "figures": figures}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
