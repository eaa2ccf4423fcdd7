"""Snakemake adapter: every category x method x metric -> summary CSV/Parquet, Markdown, bootstrap CIs, plots."""
from mmgenrec import logs
from mmgenrec.evaluate.summary import summarize

logs.setup(snakemake.log[0])
boot = snakemake.params.boot
summarize(
    snakemake.input.metrics, snakemake.output.csv, snakemake.output.md, parquet_path=snakemake.output.parquet,
    plots_dir=snakemake.output.plots, data_stats=snakemake.input.data, topk_files=snakemake.input.topk,
    textgen_files=snakemake.input.textgen, i2i_files=snakemake.input.i2i,
    enrich_checks=snakemake.input.enrich_checks, enrich_utility=snakemake.input.enrich_utility,
    enrich_skipped=snakemake.params.enrich_skipped,
    bootstrap_metrics=tuple(boot.get("bootstrap_metrics", ("HR@10", "NDCG@10"))), n_boot=boot.get("n_boot", 1000),
    seed=boot.get("seed", 0), ci=boot.get("ci", 0.95),
)
