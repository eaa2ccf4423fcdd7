"""Aggregate every ``seqrec_metrics.json`` into one long table (category x method x metric) and a wide view."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmgenrec.io import atomic_path, read_json, write_text

METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR")


def data_table(stats_files: list[str | Path]) -> pd.DataFrame:
    """One row per category from the prepare stage's ``stats.json``: what the data is after filtering."""
    rows = []
    for path in stats_files:
        s = read_json(path)
        c = s.get("counts", {})
        with_image = c.get("items_with_image", 0)
        rows.append({
            "category": s.get("category", Path(path).parent.parent.name), "users": s["n_users"], "items": s["n_items"],
            "interactions": s["n_interactions"], "sparsity": 1 - s["density"],
            "mean seq len": s["seq_len"]["mean"], "image coverage": with_image / max(s["n_items"], 1),
        })
    return pd.DataFrame(rows)


def summarize(metric_files: list[str | Path], csv_path: str | Path, markdown_path: str | Path, *,
              data_stats: list[str | Path] = ()) -> pd.DataFrame:
    """Each file is ``results/<category>/<method>/seqrec_metrics.json``; the path names category and method.
    ``data_stats`` (the prepared ``stats.json`` files) add a data section to the Markdown."""
    rows = []
    for path in metric_files:
        path = Path(path)
        data = read_json(path)
        category, method = path.parent.parent.name, path.parent.name
        for metric in (*METRICS, "invalid_beam_fraction", "n_users"):
            if metric in data:
                rows.append({"category": category, "method": method, "metric": metric, "value": float(data[metric])})
    long = pd.DataFrame(rows, columns=["category", "method", "metric", "value"])
    with atomic_path(csv_path, suffix=".csv") as tmp:
        long.to_csv(tmp, index=False)
    wide = long[long.metric.isin(METRICS)].pivot_table(index=["category", "method"], columns="metric", values="value")
    wide = wide.reindex(columns=[m for m in METRICS if m in wide.columns]).reset_index()
    users = long[long.metric == "n_users"].set_index(["category", "method"]).value.astype(int)
    wide["users"] = [users.get((c, m), 0) for c, m in zip(wide.category, wide.method)]
    text = "## Sequential recommendation (test split)\n\n" + wide.to_markdown(index=False, floatfmt=".4f") + "\n"
    if data_stats:
        data = data_table(data_stats)
        text += "\n## Data after filtering\n\n" + data.to_markdown(index=False, floatfmt=(".4f")) + "\n"
    write_text(markdown_path, text)
    return long
