"""Snakemake adapter: raw Amazon-format files -> 5-core, chronological leave-one-out, LC-Rec-style files."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.data.prepare import prepare_category

logs.setup(snakemake.log[0])
prepare_category(
    snakemake.input.meta, snakemake.input.reviews, snakemake.input.images,
    Path(snakemake.output.inter).parent, snakemake.wildcards.category, **snakemake.params.cfg,
)
