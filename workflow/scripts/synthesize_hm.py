"""Snakemake adapter: write a synthetic category in the H&M Kaggle format."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.data.synthetic_hm import synthesize_hm

logs.setup(snakemake.log[0])
synthesize_hm(Path(snakemake.output.articles).parent, **snakemake.params.synthetic)
