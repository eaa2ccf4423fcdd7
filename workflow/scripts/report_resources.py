"""Snakemake adapter: benchmark files -> per-rule runtime / memory / GPU-hours table and chart."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.report.figures import resource_table

logs.setup(snakemake.log[0])
files = sorted(str(p) for p in Path(snakemake.params.benchmarks).glob("*/*.tsv"))
resource_table(files, snakemake.params.gpus, snakemake.output.csv, snakemake.output.html, snakemake.output.png)
