"""Snakemake adapter: every ablation grid point of every category -> results/ablation_ids.csv."""
from mmgenrec import logs
from mmgenrec.quantize.ablation import gather

logs.setup(snakemake.log[0])
gather(snakemake.params.runs, snakemake.output.csv)
