"""Snakemake adapter: one category's HR@10, semantic-ID collision and training-curve figures."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.report.figures import category_figures

logs.setup(snakemake.log[0])
category_figures(
    snakemake.wildcards.category,
    metrics=dict(zip(snakemake.params.methods, snakemake.input.metrics)),
    id_stats=snakemake.input.id_stats or None,
    train_logs={m: str(Path(d) / "train_log.json") for m, d in zip(snakemake.params.generative, snakemake.input.models)},
    hr_png=snakemake.output.hr, collisions_png=snakemake.output.collisions, curves_png=snakemake.output.curves,
)
