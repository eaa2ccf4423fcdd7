"""Snakemake adapter: results/summary.csv -> an HTML table for the report."""
from mmgenrec import logs
from mmgenrec.report.figures import summary_table

logs.setup(snakemake.log[0])
summary_table(snakemake.input[0], snakemake.output[0])
