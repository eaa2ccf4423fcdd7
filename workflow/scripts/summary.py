"""Snakemake adapter: all categories x methods -> results/summary.csv + a Markdown table."""
from mmgenrec import logs
from mmgenrec.evaluate.summary import summarize

logs.setup(snakemake.log[0])
summarize(snakemake.input.metrics, snakemake.output.csv, snakemake.output.md, data_stats=snakemake.input.data)
