"""RQ-VAE epoch time and collision rate at the real Instruments size (6,250 items x 3,584 dims), LC-Rec's recipe.

Random Gaussian input (timing does not depend on the values; the collision rate of random data is a floor case,
not the real one). Prints one JSON line and, with --out, writes it to a file.

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
from mmgenrec.quantize.rqvae import encode_with_distances, train_rqvae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=6250)
    ap.add_argument("--dim", type=int, default=3584)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--hidden", type=int, nargs="+", default=[2048, 1024, 512, 256, 128, 64])
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-detach-residual", action="store_true",
                    help="every level's commitment loss reaches the encoder (default: LC-Rec's detached residual)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers.optimization  # noqa: F401  (train_rqvae's scheduler import, kept out of the timed init)

    x = np.random.default_rng(0).normal(size=(args.items, args.dim)).astype(np.float32)
    t0 = time.perf_counter()
    model, history, _ = train_rqvae(
        x, levels=4, codebook_size=args.codebook_size, hidden=args.hidden, latent_dim=args.latent_dim, epochs=args.epochs,
        batch_size=args.batch_size, lr=1e-3, weight_decay=1e-4, beta=0.25, batch_norm=False,
        sinkhorn_epsilon=[0.0, 0.0, 0.0, 0.003], warmup_epochs=min(50, args.epochs), lr_scheduler="linear",
        eval_every=args.epochs, select="last", seed=0, device=args.device, kmeans_iters=100,
        detach_residual=not args.no_detach_residual,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    codes, dist = encode_with_distances(model, x)
    before = collision_stats(codes)
    t1 = time.perf_counter()
    resolved, facts = resolve("sinkhorn", codes, dist, codebook_size=args.codebook_size)
    policy_s = time.perf_counter() - t1
    epoch_s = [h["seconds"] for h in history]
    result = {
        "items": args.items, "dim": args.dim, "epochs": args.epochs, "batch_size": args.batch_size,
        "codebook_size": args.codebook_size, "hidden": args.hidden, "latent_dim": args.latent_dim,
        "device": args.device, "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda")
        else platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "epoch_seconds_mean": round(float(np.mean(epoch_s)), 3),
        "epoch_seconds_after_first": round(float(np.mean(epoch_s[1:])), 3) if len(epoch_s) > 1 else None,
        "detach_residual": not args.no_detach_residual,
        "train_total_seconds": round(total, 2),
        "init_and_checks_seconds": round(total - sum(epoch_s), 2),  # k-means init + collision checks
        "load_average_1min": round(os.getloadavg()[0], 2),
        "final_loss": history[-1]["loss"],
        "collision_rate_nearest_codes": before["collision_rate"],
        "items_in_collisions": before["items_in_collisions"],
        "collision_rate_after_sinkhorn_policy": collision_stats(resolved)["collision_rate"],
        "sinkhorn_policy": {**facts, "seconds": round(policy_s, 2)},
        "torch": torch.__version__,
    }
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
