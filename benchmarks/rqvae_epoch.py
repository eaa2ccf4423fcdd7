"""RQ-VAE epoch time, and wall time to a collision-free index, at the real Instruments size (6,250 items x 3,584
dims), LC-Rec's recipe.

Two inputs: ``gaussian`` (random; timing does not depend on the values, its collision rate is a floor case) and
``clustered`` (:func:`clustered_items`: item-like vectors with a two-level cluster structure in a 64-dim subspace,
a large shared offset and noise, so that reconstruction and collisions mean something). Every ``--eval-every``
epochs the collision rate and the reconstruction MSE of the nearest-code index over all rows (``index_recon``) are
recorded; with ``--target-index-recon`` the result also says at which check the index first reached that value and
how long the whole path to a collision-free index took up to there (init + epochs + checks + encoding + policy).
Prints one JSON line and, with --out, writes it to a file.

    PYTHONPATH=src python benchmarks/rqvae_epoch.py --epochs 3 --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from mmgenrec.quantize.collisions import collision_stats, resolve
from mmgenrec.quantize.rqvae import encode_with_distances, reconstruction_mse, train_rqvae


def clustered_items(n: int = 6250, dim: int = 3584, *, seed: int = 0, latent: int = 64, top: int = 32,
                    sub: int = 8) -> np.ndarray:
    """Item-like vectors: ``top`` clusters of ``sub`` sub-clusters each in a ``latent``-dim subspace, mapped to
    ``dim`` by a random projection, plus a shared offset (LLM hidden states share one) and isotropic noise."""
    rng = np.random.default_rng(seed)
    top_c = rng.normal(size=(top, latent)) * 3.0
    sub_c = rng.normal(size=(top, sub, latent)) * 1.0
    t = rng.integers(top, size=n)
    s = rng.integers(sub, size=n)
    z = top_c[t] + sub_c[t, s] + 0.4 * rng.normal(size=(n, latent))
    proj = rng.normal(size=(latent, dim)) / np.sqrt(latent)
    offset = rng.normal(size=dim) * 2.0
    return (z @ proj + offset + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)


def make_input(kind: str, n: int, dim: int) -> np.ndarray:
    if kind == "gaussian":
        return np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    if kind == "clustered":
        return clustered_items(n, dim)
    raise ValueError(f"--input must be gaussian or clustered, got {kind!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=6250)
    ap.add_argument("--dim", type=int, default=3584)
    ap.add_argument("--input", default="gaussian", choices=["gaussian", "clustered"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup-epochs", type=int, default=None, help="default: min(50, epochs)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--hidden", type=int, nargs="+", default=[2048, 1024, 512, 256, 128, 64])
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--batch-norm", action="store_true", help="BatchNorm in the MLPs (what LC-Rec's run.sh runs)")
    ap.add_argument("--grad-clip", type=float, default=1.0, help="LC-Rec's trainer: 1.0; 0 = off")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-detach-residual", action="store_true",
                    help="every level's commitment loss reaches the encoder (default: LC-Rec's detached residual)")
    ap.add_argument("--eval-every", type=int, default=0, help="epochs between checks (0: only the last epoch)")
    ap.add_argument("--target-index-recon", type=float, default=None,
                    help="report the first check whose index reconstruction MSE is at most this")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers.optimization  # noqa: F401  (train_rqvae's scheduler import, kept out of the timed init)

    x = make_input(args.input, args.items, args.dim)
    warmup = min(50, args.epochs) if args.warmup_epochs is None else args.warmup_epochs
    t0 = time.perf_counter()
    model, history, _ = train_rqvae(
        x, levels=4, codebook_size=args.codebook_size, hidden=args.hidden, latent_dim=args.latent_dim, epochs=args.epochs,
        batch_size=args.batch_size, lr=1e-3, weight_decay=1e-4, beta=0.25, batch_norm=args.batch_norm,
        sinkhorn_epsilon=[0.0, 0.0, 0.0, 0.003], warmup_epochs=warmup, lr_scheduler="linear",
        eval_every=args.eval_every or args.epochs, select="last", seed=0, device=args.device, kmeans_iters=100,
        detach_residual=not args.no_detach_residual, grad_clip=args.grad_clip,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    t1 = time.perf_counter()
    codes, dist = encode_with_distances(model, x)
    before = collision_stats(codes)
    resolved, facts = resolve("sinkhorn", codes, dist, codebook_size=args.codebook_size)
    index_s = time.perf_counter() - t1  # encode + collision policy: what quantize does after training
    epoch_s = [h["seconds"] for h in history]
    init_s = total - sum(epoch_s)  # k-means init + the collision checks
    result = {
        "input": args.input, "items": args.items, "dim": args.dim, "epochs": args.epochs, "warmup_epochs": warmup,
        "batch_size": args.batch_size, "codebook_size": args.codebook_size, "hidden": args.hidden,
        "latent_dim": args.latent_dim, "batch_norm": args.batch_norm, "grad_clip": args.grad_clip,
        "device": args.device, "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda")
        else platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "epoch_seconds_mean": round(float(np.mean(epoch_s)), 3),
        "epoch_seconds_after_first": round(float(np.mean(epoch_s[1:])), 3) if len(epoch_s) > 1 else None,
        "detach_residual": not args.no_detach_residual,
        "train_total_seconds": round(total, 2),
        "init_and_checks_seconds": round(init_s, 2),
        "encode_and_policy_seconds": round(index_s, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "final_loss": history[-1]["loss"],
        "recon_per_epoch": [round(h["recon"], 6) for h in history],
        "checks": [{"epoch": h["epoch"], "index_recon": round(h["index_recon"], 6), "collision_rate": h["collision_rate"],
                    "seconds_so_far": round(sum(epoch_s[:h["epoch"]]), 2)} for h in history if h["index_recon"] is not None],
        "eval_reconstruction_mse": reconstruction_mse(model, x, resolved),  # full data, from the written codes
        "collision_rate_nearest_codes": before["collision_rate"],
        "items_in_collisions": before["items_in_collisions"],
        "collision_rate_after_sinkhorn_policy": collision_stats(resolved)["collision_rate"],
        "sinkhorn_policy": facts,
        "torch": torch.__version__,
    }
    if args.target_index_recon is not None:
        hit = next((h["epoch"] for h in history if h["index_recon"] is not None
                    and h["index_recon"] <= args.target_index_recon), None)
        result["target_index_recon"] = args.target_index_recon
        result["first_epoch_at_target"] = hit
        # the path to an index at that epoch: init + checks, the epochs up to it, then encoding + the collision
        # policy (timed on the final model; the same work at any epoch)
        result["seconds_to_collision_free_index_at_target"] = (
            None if hit is None else round(init_s + sum(epoch_s[:hit]) + index_s, 2))
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
