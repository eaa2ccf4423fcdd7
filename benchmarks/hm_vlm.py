"""The shared H&M sample through prepare -> hm_vlm (kind vlm_candidates) -> metrics, next to popularity.

Run (one thread, nice, bounded by --train-users / --valid-users / --max-users):
    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/hm_vlm.py /work/shared/data/hm-sample /tmp/hmbench
The model is the demo's tiny random Qwen2.5-VL (config/demo.yaml model.tiny), built locally: the figures show
that the path runs end to end on real H&M files, not what a real VLM reaches.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sample", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train-users", type=int, default=120)
    ap.add_argument("--valid-users", type=int, default=50)
    ap.add_argument("--max-users", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from mmgenrec.data.hm import prepare_hm
    from mmgenrec.data.synthetic import vocabulary_corpus
    from mmgenrec.evaluate.popularity import evaluate_popularity
    from mmgenrec.methods.vlm_candidates import run_vlm_candidates
    from mmgenrec.models.tiny import build_tiny_qwen25vl

    t0 = time.time()
    out, s = args.out, args.sample
    stats = prepare_hm(s / "articles_train_sample.csv", s / "customers_sample.csv", s / "transactions_train_sample.csv",
                       s / "images", out / "prepared", "hm_sample", min_interactions=3)
    model = out / "tiny"
    if not model.exists():
        tiny = yaml.safe_load((Path(__file__).parents[1] / "config/demo.yaml").read_text())["model"]["tiny"]
        build_tiny_qwen25vl(model, vocabulary_corpus(), **tiny)
    p = out / "prepared" / "hm_sample."
    ev = {"split": "test", "top_k": 10, "max_users": args.max_users, "map_k": 12}
    pop = evaluate_popularity(f"{p}inter.json", out / "pop.json", out / "pop.jsonl", **ev)
    cfg = {"max_history": 5, "n_candidates": 10, "eval_candidates": "sampled", "epochs": args.epochs,
           "batch_size": 16, "lr": 0.005, "train_users": args.train_users, "valid_users": args.valid_users}
    res = run_vlm_candidates(model, f"{p}inter.json", f"{p}item.json", out / "prepared" / "images",
                             out / "hm_vlm.json", out / "hm_vlm.jsonl", cfg=cfg, evaluation=ev,
                             checkpoint_dir=out / "ckpt", method="hm_vlm", device="cpu")
    keys = ("HR@1", "HR@5", "HR@10", "NDCG@10", "MAP@12", "candidate_HR@1", "target_in_candidates", "n_users",
            "best_epoch", "valid_candidate_HR@1", "train_examples")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {"data": {k: stats[k] for k in ("n_users", "n_items", "n_interactions")},
              "items_with_image": sum(1 for r in json.loads((out / "prepared/hm_sample.item.json").read_text()).values()
                                      if r["image"]),
              "settings": cfg, "evaluation": ev, "popularity": {k: pop[k] for k in keys if k in pop},
              "hm_vlm": {k: res[k] for k in keys if k in res}, "wall_s": round(time.time() - t0, 1),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
