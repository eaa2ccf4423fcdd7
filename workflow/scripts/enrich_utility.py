"""Snakemake adapter: VBPR on original vs enriched text -> utility.json + utility.md (the verdict)."""
from mmgenrec import logs
from mmgenrec.enrich.utility import utility_files

logs.setup(snakemake.log[0], threads=snakemake.threads)
utility_files(snakemake.input.inter, snakemake.input.item, snakemake.input.enriched, snakemake.input.images,
              snakemake.output.json, snakemake.output.md, snakemake.wildcards.category, **snakemake.params.cfg)
