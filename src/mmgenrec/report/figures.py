"""Report figures and tables from files the workflow already wrote.

* ``category_figures``: HR@10 by method, semantic-ID collision rates, training curves (RQ-VAE loss per epoch
  from ``ids/rqvae/stats.json``; LoRA finetuning loss per step from each model's ``train_log.json``);
* ``summary_table``: ``results/summary.csv`` as an HTML table (category x method x metric);
* ``resource_table``: per-rule runtime, peak memory and GPU-hours from Snakemake's ``benchmark:`` files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mmgenrec.io import InputError, atomic_path, read_json, write_text  # noqa: E402

log = logging.getLogger(__name__)
TABLE_STYLE = ("<style>body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#eee}</style>")


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _read(path: str | Path, *keys: str) -> dict:
    data = read_json(path)
    for key in keys:
        if key not in data:
            raise InputError(f"{path}: missing field {key!r}")
    return data


def _id_set_figure(category: str, id_stats: str | None, png: str) -> dict:
    """Collision rates and per-level code usage of the category's id set: one we built (before / after the
    collision policy), an imported one (its own collisions), or none (no method of the category uses IDs)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    if id_stats is None:
        stats = {}
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no method of this category uses semantic IDs", ha="center", va="center")
            ax.set_axis_off()
    elif read_json(id_stats).get("imported"):
        stats = _read(id_stats, "collision_rate", "used_codes", "codebook_size_seen")
        bars = ax1.bar(["imported IDs"], [stats["collision_rate"]], color=["#3b7dd8"])
        ax1.bar_label(bars, fmt="%.3f")
        levels = list(range(len(stats["used_codes"])))
        ax2.bar(levels, [u / max(k, 1) for u, k in zip(stats["used_codes"], stats["codebook_size_seen"])],
                color="#3b7dd8")
    else:
        stats = _read(id_stats, "collisions_before", "collisions_after", "per_level")
        rates = {"RQ-VAE codes": stats["collisions_before"]["collision_rate"],
                 f"after {stats.get('collision_policy', 'policy')}": stats["collisions_after"]["collision_rate"]}
        bars = ax1.bar(list(rates), list(rates.values()), color=["#d8733b", "#3b7dd8"])
        ax1.bar_label(bars, fmt="%.3f")
        levels = [row["level"] for row in stats["per_level"]]
        ax2.bar(levels, [row["utilisation"] for row in stats["per_level"]], color="#3b7dd8")
    if id_stats is not None:
        ax1.set_ylabel("share of items sharing an ID")
        ax1.set_title("collision rate")
        ax2.set_xticks(levels)
        ax2.set_xlabel("ID level")
        ax2.set_ylabel("codes used / codebook size")
        ax2.set_ylim(0, 1.05)
        ax2.set_title("codebook utilisation")
    fig.suptitle(f"{category}: semantic IDs ({stats.get('n_items', '?')} items)")
    _save(fig, png)
    return stats


def category_figures(category: str, metrics: dict[str, str], id_stats: str | None, train_logs: dict[str, str],
                     hr_png: str, collisions_png: str, curves_png: str, k: int = 10) -> None:
    """``metrics``: method -> seqrec_metrics.json; ``id_stats``: the id set's stats.json (None when no method of the
    category uses semantic IDs); ``train_logs``: generative method -> model/train_log.json."""
    hr = {method: _read(path, f"HR@{k}")[f"HR@{k}"] for method, path in metrics.items()}
    fig, ax = plt.subplots(figsize=(4.5, 3))
    bars = ax.bar(list(hr), list(hr.values()), color=["#3b7dd8" if m.startswith("ours") else "#999" for m in hr])
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel(f"HR@{k}")
    ax.set_ylim(0, max(1e-3, max(hr.values())) * 1.2)
    ax.set_title(f"{category}: HR@{k} by method")
    _save(fig, hr_png)

    stats = _id_set_figure(category, id_stats, collisions_png)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    history = stats.get("history") or []
    ax1.plot([row["epoch"] for row in history], [row["loss"] for row in history], color="#d8733b")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_title("RQ-VAE")
    for method, path in train_logs.items():
        curve = _read(path, "curve")["curve"]
        ax2.plot([p["step"] for p in curve], [p["loss"] for p in curve], label=method)
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss")
    ax2.set_title("LoRA finetuning")
    if train_logs:
        ax2.legend()
    fig.suptitle(f"{category}: training curves")
    _save(fig, curves_png)
    log.info("%s: wrote %s, %s, %s", category, hr_png, collisions_png, curves_png)


def summary_table(summary_csv: str, out_html: str) -> pd.DataFrame:
    df = pd.read_csv(summary_csv)
    missing = {"category", "method", "metric", "value"} - set(df.columns)
    if missing:
        raise InputError(f"{summary_csv}: missing columns {sorted(missing)}")
    wide = df.pivot_table(index=["category", "method"], columns="metric", values="value", sort=False)
    html = wide.to_html(float_format=lambda v: f"{v:.4f}", table_id="summary", border=0)
    write_text(out_html, f"<!doctype html><html><head><meta charset='utf-8'>{TABLE_STYLE}</head><body>"
                         f"<h3>category &times; method &times; metric</h3>{html}</body></html>\n")
    return wide


def resource_table(benchmark_files: list[str], gpus_per_rule: dict[str, int], out_csv: str, out_html: str,
                   out_png: str) -> pd.DataFrame:
    """One row per rule: jobs, wall seconds (sum, max), peak RSS, GPUs per job, GPU-hours (wall x GPUs)."""
    rows = []
    for path in benchmark_files:
        path = Path(path)
        df = pd.read_csv(path, sep="\t")
        if not {"s", "max_rss"} <= set(df.columns) or df.empty:
            raise InputError(f"{path}: not a Snakemake benchmark file (needs columns s, max_rss)")
        rows.append({"rule": path.parent.name, "job": path.stem, "seconds": float(df.s.iloc[-1]),
                     "max_rss_mb": pd.to_numeric(df.max_rss, errors="coerce").iloc[-1]})
    jobs = pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb"])
    table = jobs.groupby("rule").agg(jobs=("job", "count"), seconds_total=("seconds", "sum"),
                                     seconds_max=("seconds", "max"), max_rss_mb=("max_rss_mb", "max")).reset_index()
    table["gpus_per_job"] = [int(gpus_per_rule.get(rule, 0)) for rule in table.rule]
    table["gpu_hours"] = table.seconds_total * table.gpus_per_job / 3600
    table = table.sort_values("seconds_total", ascending=False, ignore_index=True)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    total = table[["jobs", "seconds_total", "gpu_hours"]].sum()
    html = table.to_html(index=False, float_format=lambda v: f"{v:.3f}", table_id="resources", border=0)
    write_text(out_html, f"<!doctype html><html><head><meta charset='utf-8'>{TABLE_STYLE}</head><body>"
                         f"<h3>runtime and memory per rule (benchmark files)</h3>{html}"
                         f"<p>{int(total.jobs)} jobs, {total.seconds_total:.0f} s of job time, "
                         f"{total.gpu_hours:.4f} GPU-hours (wall time &times; GPUs requested).</p></body></html>\n")
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(table) + 1))
    ax.barh(table.rule, table.seconds_total, color=["#3b7dd8" if g else "#999" for g in table.gpus_per_job])
    ax.invert_yaxis()
    ax.set_xlabel("job time, seconds (blue: GPU rules)")
    ax.set_title("time per stage")
    _save(fig, out_png)
    return table
