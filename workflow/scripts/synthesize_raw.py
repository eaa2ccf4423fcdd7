"""Snakemake adapter: write a synthetic category in the raw Amazon-2018 format."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.data.synthetic import generate_category

logs.setup(snakemake.log[0])
out_dir = Path(snakemake.output.meta).parent
generate_category(out_dir, snakemake.wildcards.category, **snakemake.params.synthetic)
