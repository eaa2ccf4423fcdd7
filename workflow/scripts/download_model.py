"""Snakemake adapter: a Hugging Face model snapshot into model.path (resumable; later rules load it locally)."""
from mmgenrec import logs
from mmgenrec.models.loading import download_snapshot

logs.setup(snakemake.log[0])
download_snapshot(snakemake.params.repo, snakemake.output[0], revision=snakemake.params.revision)
