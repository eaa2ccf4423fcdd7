"""Gather every category's results into one long table (task x category x method x metric x value), Markdown
tables, paired bootstrap intervals between methods, and plots.

* ``seqrec``: ``results/<cat>/<method>/seqrec_metrics.json`` (path names category and method);
* ``bootstrap``: for every category and every pair of methods, the paired bootstrap of the per-user difference
  (from ``seqrec_topk.jsonl``, users matched by id); ``method`` reads ``A vs B``, metrics ``<M> diff``,
  ``<M> ci_low``, ``<M> ci_high``, ``<M> p``;
* ``textgen``: ``results/<cat>/<system>/textgen_metrics.json``;
* ``i2i``: ``results/<cat>/i2i_metrics.json``, one method per vector source.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from mmgenrec.evaluate.metrics import paired_bootstrap
from mmgenrec.io import InputError, atomic_path, iter_json_lines, read_json, write_text

METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR", "MAP@12")  # MAP@12: H&M categories only
TEXT_METRICS = ("BLEU", "chrF", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BERTScore-F1")
I2I_METRICS = ("Hit@1", "Hit@5", "Hit@10", "NDCG@10")
# candidate rankers' extra keys in seqrec_metrics.json (mmgenrec.methods.llm_ranker / collm): the retrieval subset,
# the retriever's own order, and the pointwise AUC / UAUC of the yes/no rankers
RANKER_METRICS = ("retrieval_recall", "subset_HR@10", "subset_NDCG@10", "retriever_HR@10", "retriever_NDCG@10",
                  "retriever_subset_NDCG@10", "AUC", "UAUC", "AUC_warm", "UAUC_warm", "AUC_cold", "UAUC_cold",
                  "retrieval_ms_per_user")
COLUMNS = ["task", "category", "method", "metric", "value"]


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


def _cat_method(path: Path) -> tuple[str, str]:
    return path.parent.parent.name, path.parent.name


def per_user_values(topk_jsonl: str | Path, metrics: tuple[str, ...]) -> pd.DataFrame:
    """user -> per-user metric values from a ``seqrec_topk.jsonl``."""
    rows = []
    for lineno, rec in iter_json_lines(topk_jsonl):
        missing = [m for m in ("user", *metrics) if m not in rec]
        if missing:
            raise InputError(f"{topk_jsonl}: line {lineno}: field {missing[0]!r} missing")
        rows.append({"user": str(rec["user"]), **{m: float(rec[m]) for m in metrics}})
    return pd.DataFrame(rows).set_index("user")


def bootstrap_rows(topk_files: list[str | Path], metrics: tuple[str, ...], *, n_boot: int, seed: int,
                   ci: float) -> list[dict]:
    """Paired bootstrap rows for every category and pair of methods (sorted names; ``A - B``)."""
    by_cat: dict[str, dict[str, Path]] = {}
    for path in map(Path, topk_files):
        cat, method = _cat_method(path)
        by_cat.setdefault(cat, {})[method] = path
    rows = []
    for cat in sorted(by_cat):
        values = {m: per_user_values(p, metrics) for m, p in by_cat[cat].items()}
        for a, b in itertools.combinations(sorted(values), 2):
            joined = values[a].merge(values[b], left_index=True, right_index=True, suffixes=("_a", "_b"))
            if len(joined) != len(values[a]) or len(joined) != len(values[b]):
                raise InputError(f"{cat}: {a} and {b} were evaluated on different users "
                                 f"({len(values[a])} vs {len(values[b])}, {len(joined)} shared)")
            for m in metrics:
                r = paired_bootstrap(joined[f"{m}_a"].to_numpy(), joined[f"{m}_b"].to_numpy(), n_boot=n_boot,
                                     seed=seed, ci=ci)
                for key, name in (("diff", "diff"), ("ci_low", "ci_low"), ("ci_high", "ci_high"), ("p_value", "p")):
                    rows.append({"task": "bootstrap", "category": cat, "method": f"{a} vs {b}",
                                 "metric": f"{m} {name}", "value": r[key]})
    return rows


def _plot_bars(frame: pd.DataFrame, metric: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wide = frame[frame.metric == metric].pivot_table(index="category", columns="method", values="value")
    fig, ax = plt.subplots(figsize=(max(4, 1.5 * len(wide) + 2), 3.5))
    wide.plot.bar(ax=ax, rot=0)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _markdown_wide(frame: pd.DataFrame, metrics: tuple[str, ...], extra: str | None = None) -> str:
    wide = frame[frame.metric.isin(metrics)].pivot_table(index=["category", "method"], columns="metric",
                                                         values="value")
    wide = wide.reindex(columns=[m for m in metrics if m in wide.columns]).reset_index()
    if extra:
        counts = frame[frame.metric == extra].set_index(["category", "method"]).value.astype(int)
        wide[extra.replace("n_", "")] = [counts.get((c, m), 0) for c, m in zip(wide.category, wide.method)]
    return wide.to_markdown(index=False, floatfmt=".4f") + "\n"


def summarize(metric_files: list[str | Path], csv_path: str | Path, markdown_path: str | Path, *,
              parquet_path: str | Path | None = None, plots_dir: str | Path | None = None,
              data_stats: list[str | Path] = (), topk_files: list[str | Path] = (),
              textgen_files: list[str | Path] = (), i2i_files: list[str | Path] = (),
              enrich_checks: list[str | Path] = (), enrich_utility: list[str | Path] = (),
              enrich_skipped: dict[str, str] | None = None, bootstrap_metrics: tuple[str, ...] = ("HR@10", "NDCG@10"), n_boot: int = 1000, seed: int = 0,
              ci: float = 0.95) -> pd.DataFrame:
    """Write the long table (CSV, Parquet), the Markdown report and the plots; return the long table."""
    rows = []
    for path in map(Path, metric_files):
        data = read_json(path)
        category, method = _cat_method(path)
        for metric in (*METRICS, "invalid_beam_fraction", "collision_target_fraction", "n_users"):
            if metric in data:
                rows.append({"task": "seqrec", "category": category, "method": method, "metric": metric,
                             "value": float(data[metric])})
        for metric in RANKER_METRICS:
            if data.get(metric) is not None:
                rows.append({"task": "ranker", "category": category, "method": method, "metric": metric,
                             "value": float(data[metric])})
        several = len(data.get("template_ids", [])) > 1  # min/max over prompt templates
        for metric, stats in (data.get("template_stats", {}) if several else {}).items():
            for key in ("min", "max"):
                rows.append({"task": "seqrec", "category": category, "method": method,
                             "metric": f"{metric} template {key}", "value": float(stats[key])})
    if topk_files:
        rows += bootstrap_rows(list(topk_files), tuple(bootstrap_metrics), n_boot=n_boot, seed=seed, ci=ci)
    for path in map(Path, textgen_files):
        data = read_json(path)
        category, system = _cat_method(path)
        for metric in (*TEXT_METRICS, "n"):
            if metric in data:
                rows.append({"task": "textgen", "category": category, "method": system, "metric": metric,
                             "value": float(data[metric])})
    for path in map(Path, i2i_files):
        data = read_json(path)
        for source, metrics in data["sources"].items():
            for metric in (*I2I_METRICS, "n_queries"):
                if metric in metrics:
                    rows.append({"task": "i2i", "category": path.parent.name, "method": source, "metric": metric,
                                 "value": float(metrics[metric])})
    verdicts, aa_rows = {}, {}
    for path in map(Path, enrich_utility):  # results/<cat>/enrich/utility.json
        data, category = read_json(path), path.parent.parent.name
        verdicts[category] = data["verdict"]
        for arm, stats in data["arms"].items():
            for metric, value in stats.items():
                if not metric.startswith("valid_"):
                    rows.append({"task": "enrich_utility", "category": category, "method": f"vbpr_{arm}_text",
                                 "metric": metric, "value": float(value["mean"])})
        for metric, comp in data["comparison"].items():
            for key, value in (("relative gain", comp.get("relative_change")), *zip(("ci low", "ci high"),
                                                                                  comp.get("ci", ()))):
                if value is not None:
                    rows.append({"task": "enrich_utility", "category": category, "method": "enriched - original",
                                 "metric": f"{metric} {key}", "value": float(value)})
        if "aa" in data:  # the A/A calibration: original vs original with other seeds
            aa = data["aa"]
            aa_rows[category] = f"{aa['result']['verdict']} (false positives {aa['false_positive_rate']:.0%} of " \
                                f"{aa['draws']} at alpha {aa['alpha']})"
            rows.append({"task": "enrich_utility", "category": category, "method": "A/A original - original",
                         "metric": f"{data['metric']} false-positive rate", "value": float(aa["false_positive_rate"])})
            if aa["result"]["relative_gain"] is not None:
                rows.append({"task": "enrich_utility", "category": category, "method": "A/A original - original",
                             "metric": f"{data['metric']} relative gain",
                             "value": float(aa["result"]["relative_gain"])})
    for category, reason in (enrich_skipped or {}).items():
        verdicts[category] = f"skipped ({reason})"
    check_rows = []
    for path in map(Path, enrich_checks):  # results/<cat>/enrich/checks.json
        data, category = read_json(path), path.parent.parent.name
        row = {"category": category, "checks passed": bool(data["ok"])}
        for name, check in data["checks"].items():
            row[name] = float(check["value"])
            rows.append({"task": "enrich_checks", "category": category, "method": "enriched", "metric": name,
                         "value": float(check["value"])})
        check_rows.append(row)
    long = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(csv_path, suffix=".csv") as tmp:
        long.to_csv(tmp, index=False)
    if parquet_path is not None:
        with atomic_path(parquet_path, suffix=".parquet") as tmp:
            long.to_parquet(tmp, index=False)

    seq = long[long.task == "seqrec"]
    text = "## Sequential recommendation (test split)\n\n" + _markdown_wide(seq, METRICS, "n_users")
    ranges = seq[seq.metric.str.endswith((" template min", " template max"))]
    if len(ranges):
        text += "\nRange over prompt templates (min / max):\n\n" + _markdown_wide(
            ranges, tuple(f"{m} template {k}" for m in METRICS for k in ("min", "max")))
    rk = long[long.task == "ranker"]
    if len(rk):
        text += ("\n## Candidate rankers (subset: users whose target was retrieved; retriever: its own order of the "
                 "same candidates; AUC/UAUC: target vs sampled unseen items)\n\n" + _markdown_wide(rk, RANKER_METRICS))
    boot = long[long.task == "bootstrap"]
    if len(boot):
        table = []
        for (cat, pair), g in boot.groupby(["category", "method"], sort=True):
            v = dict(zip(g.metric, g.value))
            for m in bootstrap_metrics:
                table.append({"category": cat, "A vs B": pair, "metric": m, "A - B": v[f"{m} diff"],
                              f"{ci:.0%} CI": f"[{v[f'{m} ci_low']:.4f}, {v[f'{m} ci_high']:.4f}]",
                              "p": v[f"{m} p"]})
        text += (f"\n## Paired bootstrap of the difference between methods ({n_boot} resamples of the test users, "
                 f"seed {seed})\n\n" + pd.DataFrame(table).to_markdown(index=False, floatfmt=".4f") + "\n")
    tg = long[long.task == "textgen"]
    if len(tg):
        text += ("\n## Text generation (mmitemenrich, held-out items; BLEU/chrF 0-100, ROUGE F1 0-1)\n\n"
                 + _markdown_wide(tg, TEXT_METRICS, "n"))
    ii = long[long.task == "i2i"]
    if len(ii):
        text += ("\n## Item-to-item embedding quality (label: most co-occurring training item)\n\n"
                 + _markdown_wide(ii, I2I_METRICS, "n_queries"))
    if check_rows or verdicts:
        text += ("\n## Enriched item text (results/<cat>/enrich/checks.md, utility.md)\n\n"
                 "Check values are rates (coverage: share of items enriched); utility: Cornac VBPR with the original "
                 "vs the enriched item text, same encoder and hyper-parameters, 3+ seeds; verdict from the bootstrap "
                 "interval (seeds + users) of the relative gain; A/A: the original text against itself with other "
                 "seeds, the same procedure (must be no_difference).\n\n")
        table = pd.DataFrame(check_rows) if check_rows else pd.DataFrame({"category": []})
        missing = sorted(set(verdicts) - set(table["category"]))
        if missing:  # skipped categories (no enrichment) have no checks
            table = pd.concat([table, pd.DataFrame({"category": missing})], ignore_index=True)
            if "checks passed" in table:
                table["checks passed"] = [str(v) if isinstance(v, bool) else "n/a" for v in table["checks passed"]]
            table = table.astype(object).where(table.notna(), None)
        table["utility verdict"] = [verdicts.get(c, "n/a") for c in table["category"]]
        table["A/A calibration"] = [aa_rows.get(c, "n/a") for c in table["category"]]
        text += table.to_markdown(index=False, floatfmt=".4f", missingval="n/a") + "\n"
    if data_stats:
        data = data_table(list(data_stats))
        text += "\n## Data after filtering\n\n" + data.to_markdown(index=False, floatfmt=(".4f")) + "\n"
    write_text(markdown_path, text)

    if plots_dir is not None:
        plots = Path(plots_dir)
        plots.mkdir(parents=True, exist_ok=True)
        _plot_bars(seq, "HR@10", "HR@10 by method", plots / "seqrec_hr10.png")
        _plot_bars(seq, "NDCG@10", "NDCG@10 by method", plots / "seqrec_ndcg10.png")
        if len(tg):
            _plot_bars(tg, "ROUGE-L", "Text generation: ROUGE-L F1", plots / "textgen_rougeL.png")
        if len(ii):
            _plot_bars(ii, "Hit@10", "I2I: Hit@10 by vector source", plots / "i2i_hit10.png")
    return long
