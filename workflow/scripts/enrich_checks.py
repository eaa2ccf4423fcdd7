"""Snakemake adapter: checks.json + checks.md; the job fails (naming the worst items) when a threshold is broken."""
from mmgenrec import logs
from mmgenrec.enrich.checks import check_files

logs.setup(snakemake.log[0])
check_files(snakemake.input.item, snakemake.input.enriched, snakemake.output.json, snakemake.output.md,
            snakemake.wildcards.category, **snakemake.params.cfg)
