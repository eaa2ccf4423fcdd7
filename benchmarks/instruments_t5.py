"""TIGER over the four published Instruments id sets and MQL4Rec over MQL4GRec's text + image ids, everything else
equal (same split, same trainer, same budget, same users): do multimodal VLM IDs help a T5 generator?

Bounded CPU run (the default; results in benchmarks/instruments_t5.{md,json}):

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/instruments_t5.py

Full schedule (GPU; TIGER's real size, 200 epochs with early stopping on every valid user, every test user):

    PYTHONPATH=src python benchmarks/instruments_t5.py --full --out benchmarks/instruments_t5_full
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mmgenrec.evaluate.metrics import popularity_topk, rank_metrics  # noqa: E402
from mmgenrec.io import write_json, write_text  # noqa: E402
from mmgenrec.methods.base import Evaluation, read_sequences, train_sequences  # noqa: E402
from mmgenrec.methods.mql4rec import run_mql4rec  # noqa: E402
from mmgenrec.methods.t5_genrec import run_t5_genrec  # noqa: E402

IDSETS = {
    "qwen7B": "the study's multimodal Qwen2.5-VL-7B IDs",
    "llama-td": "the study's text-only LLaMA IDs (its TIGER / LC-Rec baselines)",
    "lemb": "MQL4GRec text IDs (LLaMA embeddings)",
    "vitemb": "MQL4GRec image IDs (CLIP ViT-L/14)",
}
METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")

# the bounded CPU budget: a reduced T5, a training-time budget per run, a fixed user subset
CPU = {
    "model": {"d_model": 64, "d_kv": 32, "num_heads": 2, "d_ff": 256, "num_layers": 1, "num_decoder_layers": 1,
              "dropout": 0.1},
    "max_history": 20, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.01, "schedule": "inverse_sqrt",
    "warmup_steps": 200, "batch_size": 256, "samples_per_epoch": 30000, "max_epochs": 1000, "eval_every": 1,
    "patience": 1000, "num_beams": 20, "eval_batch_size": 100, "valid_users": 200, "seed": 0, "device": "cpu",
}
CPU_BUDGET_S = {"tiger": 150, "mql4rec": 400}
CPU_TEST_USERS = 1000
# the full schedule: TIGER's size and optimizer (T5X: Adafactor, 0.01 for 10k steps, then inverse square root)
FULL = {
    "model": {}, "max_history": 20, "optimizer": "adafactor", "lr": 0.01, "weight_decay": 0.0,
    "schedule": "inverse_sqrt", "warmup_steps": 10000, "batch_size": 256, "max_epochs": 200, "eval_every": 1,
    "patience": 10, "num_beams": 20, "eval_batch_size": 256, "seed": 0,
}


def popularity(sequences, evaluation: Evaluation) -> dict:
    examples = evaluation.examples(sequences)
    n_items = 1 + max(i for s in sequences.values() for i in s)
    top = popularity_topk(list(train_sequences(sequences).values()), n_items, 10)
    return rank_metrics([top] * len(examples), [e.target for e in examples])


def curve_rows(history: list[dict]) -> list[dict]:
    return [{"epoch": h["epoch"], "samples": h["samples"], "loss": round(h["loss"], 4),
             "train_s": h["train_seconds"], **{f"valid {m}": round(h["valid"][m], 4) for m in ("HR@10", "NDCG@10")
                                               if "valid" in h}} for h in history]


def markdown(report: dict) -> str:
    lines = ["# Instruments: TIGER over four published id sets, MQL4Rec over text + image ids", "",
             report["setting"], "", f"Command: `{report['command']}`", "",
             f"GPU command for the full schedule: `{report['gpu_command']}`", "",
             "| run | id set | distinct ids | " + " | ".join(METRICS) + " | best epoch | train s | wall s |",
             "|---|---|---|" + "---|" * (len(METRICS) + 3)]
    pop = report["popularity"]
    lines.append("| popularity | - | - | " + " | ".join(f"{pop[m]:.4f}" for m in METRICS) + " | - | - | - |")
    for name, r in report["runs"].items():
        lines.append(f"| {name} | {r['idset']} | {r.get('n_distinct_ids', '-')} | "
                     + " | ".join(f"{r['test'][m]:.4f}" for m in METRICS)
                     + f" | {r['best_epoch']} | {r['train_seconds']:.0f} | {r['wall_seconds']:.0f} |")
    lines += ["", "## Training curves (loss per epoch-chunk, valid HR@10 / NDCG@10 on the valid subset)", ""]
    for name, r in report["runs"].items():
        if not r["curve"]:
            continue
        lines += [f"### {name}", "", "| epoch | samples | loss | train s | valid HR@10 | valid NDCG@10 |",
                  "|---|---|---|---|---|---|"]
        for c in r["curve"]:
            lines.append(f"| {c['epoch']} | {c['samples']} | {c['loss']} | {c['train_s']} | "
                         f"{c.get('valid HR@10', '')} | {c.get('valid NDCG@10', '')} |")
        lines.append("")
    lines += ["## Reading", "", report.get("reading", ""), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "Instruments"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "instruments_t5"), help="writes <out>.json/.md")
    ap.add_argument("--work", default="/tmp/instruments_t5", help="checkpoints and per-run outputs")
    ap.add_argument("--full", action="store_true", help="the full schedule (GPU): TIGER size, every user")
    ap.add_argument("--runs", default="qwen7B,llama-td,lemb,vitemb,mql4rec")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.full:
        torch.set_num_threads(1)
    data, work = Path(args.data), Path(args.work)
    inter = data / "Instruments.inter.json"
    sequences = read_sequences(inter)
    test_users = None if args.full else CPU_TEST_USERS
    evaluation = Evaluation(split="test", top_k=10, max_users=test_users)
    base = FULL if args.full else CPU
    report = {
        "setting": (("Full schedule: TIGER's size (4+4 layers, 6x64 heads, d_model 128, MLP 1024, dropout 0.1), "
                     "Adafactor 0.01 + inverse sqrt after 10k steps, batch 256, <= 200 epochs, early stopping "
                     "(patience 10) on valid NDCG@10 over every valid user; every test user.") if args.full else
                    (f"Bounded CPU run (1 thread, nice 10, on a shared 2-core machine): a reduced T5 (1+1 layers, "
                     f"d_model 64, 2 heads of 32, MLP 256, dropout 0.1), AdamW 3e-3 (inverse sqrt after 200 "
                     f"steps), batch 256, history 20, length-grouped batches; training stops after "
                     f"{CPU_BUDGET_S['tiger']} s (TIGER) / {CPU_BUDGET_S['mql4rec']} s (MQL4Rec: five tasks, "
                     f"about 3x the samples) of training time; an epoch below is a chunk of 30,000 samples (a full "
                     f"pass is {84890} TIGER samples); valid HR@10/NDCG@10 on a seeded sample of 200 valid users "
                     f"after every chunk, the best chunk's weights kept; test on the first {CPU_TEST_USERS} users "
                     f"of inter.json (file order), beam 20, trie-constrained.")),
        "command": ("PYTHONPATH=src python benchmarks/instruments_t5.py --full --out benchmarks/instruments_t5_full"
                    if args.full else "nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src "
                                      "python benchmarks/instruments_t5.py"),
        "gpu_command": "PYTHONPATH=src python benchmarks/instruments_t5.py --full --out benchmarks/instruments_t5_full",
        "n_test_users": len(evaluation.examples(sequences)),
        "popularity": popularity(sequences, evaluation), "runs": {},
    }
    out = Path(args.out)
    if out.with_suffix(".json").exists() and not args.full:
        report["runs"] = json.loads(out.with_suffix(".json").read_text()).get("runs", {})
    for run in args.runs.split(","):
        name = "mql4rec[lemb+vitemb]" if run == "mql4rec" else f"tiger[{run}]"
        if name in report["runs"]:
            continue
        t0 = time.time()
        rdir = work / run
        budget = None if args.full else CPU_BUDGET_S["mql4rec" if run == "mql4rec" else "tiger"]
        if run == "mql4rec":
            cfg = {**base, "time_budget_s": budget, "schedule": base["schedule"]}
            res = run_mql4rec(inter, data / "Instruments.index_lemb.json", data / "Instruments.index_vitemb.json",
                              rdir / "seqrec_metrics.json", rdir / "seqrec_topk.jsonl", rdir / "model", cfg=cfg,
                              evaluation=evaluation, checkpoint_dir=rdir / "checkpoints", method="mql4rec")
            idset = "lemb + vitemb (fused)"
        else:
            cfg = {**base, "time_budget_s": budget, "user_buckets": 2000}
            res = run_t5_genrec(inter, data / f"Instruments.index_{run}.json", rdir / "seqrec_metrics.json",
                                rdir / "seqrec_topk.jsonl", rdir / "model", cfg=cfg, evaluation=evaluation,
                                checkpoint_dir=rdir / "checkpoints", method=f"tiger_{run}")
            idset = run
        history = json.loads((rdir / "model" / "training.json").read_text())["history"]
        report["runs"][name] = {
            "idset": idset, "test": {m: res[m] for m in METRICS}, "best_epoch": res["best_epoch"],
            "n_distinct_ids": res.get("n_distinct_ids"), "invalid_beam_fraction": res["invalid_beam_fraction"],
            "train_seconds": res["train_seconds"], "wall_seconds": round(time.time() - t0, 1),
            "stopped": res["stopped"], "curve": curve_rows(history)}
        if run == "mql4rec":
            for modality in ("text", "image"):
                report["runs"][f"mql4rec[{modality} only]"] = {
                    **report["runs"][name], "idset": "lemb" if modality == "text" else "vitemb",
                    "test": {m: res["per_modality"][modality][m] for m in METRICS}, "curve": []}
        write_json(out.with_suffix(".json"), report)
    write_text(out.with_suffix(".md"), markdown(report))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
