"""Snakemake adapter: a category's source data -> 5-core, chronological leave-one-out, LC-Rec-style files."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.data.sources import prepare_source

logs.setup(snakemake.log[0])
prepare_source(
    snakemake.params.source, dict(snakemake.input.items()), Path(snakemake.output.inter).parent,
    snakemake.wildcards.category, image_dir=snakemake.params.image_dir, **snakemake.params.cfg,
)
