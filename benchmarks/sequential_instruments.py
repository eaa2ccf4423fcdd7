"""SASRec / BERT4Rec / GRU4Rec / LRURec on the original study's Instruments split, on this machine's CPU.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sequential_instruments.py \
        --data ../shared/data/Instruments/Instruments.inter.json --minutes 6

Each model is trained by the library (:func:`mmgenrec.methods.sequential.run_sequential`) on the training parts,
early-stopped on the valid split (NDCG@10), capped at ``--minutes`` of training; test metrics come from the shared
metric code (``Evaluation.write``), history items not excluded (the evaluate default). Writes
``benchmarks/sequential_instruments.json`` and ``.md``; the runs' own files go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mmgenrec.methods.sequential import run_sequential

HERE = Path(__file__).resolve().parent
COMMON = {"kind": "sequential", "hidden": 64, "layers": 2, "heads": 2, "max_len": 50, "batch_size": 256,
          "lr": 0.001, "weight_decay": 0.0, "eval_every": 1, "patience": 5, "epochs": 200, "seed": 0,
          "eval_batch_size": 1024, "candidates_k": 20, "train_candidates": "last", "device": "cpu"}
MODELS = {
    "sasrec": {"model": "sasrec", "dropout": 0.2},
    "bert4rec": {"model": "bert4rec", "dropout": 0.2, "mask_prob": 0.4, "lr": 0.002, "patience": 8},
    "gru4rec": {"model": "gru4rec", "dropout": 0.2, "layers": 1},
    "lrurec": {"model": "lrurec", "dropout": 0.2, "weight_decay": 0.01},
}
METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared/data/Instruments/Instruments.inter.json"))
    ap.add_argument("--out", default=str(HERE.parent / "results/benchmarks/sequential_instruments"))
    ap.add_argument("--minutes", type=float, default=6.0, help="training cap per model")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--result", default=str(HERE / "sequential_instruments.json"),
                    help="the JSON the runs are added to (one per process when models run side by side; "
                         "--merge joins them)")
    ap.add_argument("--merge", nargs="*", default=None, help="join these result JSONs into the page and exit")
    args = ap.parse_args(argv)
    if args.merge:
        runs, first = {}, json.loads(Path(args.merge[0]).read_text())
        for path in args.merge:
            runs.update(json.loads(Path(path).read_text())["runs"])
        merged = {**first, "runs": {m: runs[m] for m in MODELS if m in runs}}
        (HERE / "sequential_instruments.json").write_text(json.dumps(merged, indent=1))
        write_markdown(merged)
        return
    torch.set_num_threads(args.threads)
    out, rows = Path(args.out), {}
    result_json = Path(args.result)
    if result_json.exists():
        rows = json.loads(result_json.read_text()).get("runs", {})
    for name in args.models:
        cfg = {**COMMON, **MODELS[name], "max_minutes": args.minutes}
        t0 = time.monotonic()
        m = run_sequential(args.data, out / name / "seqrec_metrics.json", out / name / "seqrec_topk.jsonl",
                           out / "candidates" / name, out / name / "train_log.json", cfg=cfg, evaluation={},
                           method=name, checkpoints=out / name / "checkpoints")
        rows[name] = {**{k: m[k] for k in METRICS}, "valid": m["valid"], "best_epoch": m["best_epoch"],
                      "epochs_run": m["epochs_run"], "train_seconds": m["train_seconds"],
                      "wall_seconds": round(time.monotonic() - t0, 1), "n_users": m["n_users"],
                      "n_params": m["n_params"], "candidates": m["candidates"], "settings": m["selected"]}
        print(name, {k: round(m[k], 4) for k in METRICS}, "epochs", m["epochs_run"], flush=True)
        result_json.write_text(json.dumps({"command": " ".join(sys.argv), "data": args.data,
                                           "machine": f"{platform.processor() or platform.machine()}, "
                                                      f"{args.threads} thread(s), torch {torch.__version__}",
                                           "runs": rows}, indent=1))
    write_markdown(json.loads(result_json.read_text()))


def write_markdown(res: dict) -> None:
    lines = ["| model | HR@1 | HR@5 | HR@10 | NDCG@5 | NDCG@10 | valid NDCG@10 | best / run epochs | train min | "
             "cand. Recall@20 valid / test |", "|---" * 10 + "|"]
    for name, r in res["runs"].items():
        c = r["candidates"]
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in METRICS) +
                     f" | {r['valid']['NDCG@10']:.4f} | {r['best_epoch']} / {r['epochs_run']} | "
                     f"{r['train_seconds'] / 60:.1f} | {c['valid_recall@20']:.3f} / {c['test_recall@20']:.3f} |")
    table = "\n".join(lines)
    md = HERE / "sequential_instruments.md"
    head = md.read_text().split("<!-- table -->")[0] if md.exists() else "# Sequential baselines on Instruments\n\n"
    md.write_text(f"{head}<!-- table -->\n{table}\n\nCommand: `{res['command']}` ({res['machine']}).\n")


if __name__ == "__main__":
    main()
