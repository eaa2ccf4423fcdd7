"""Snakemake adapter: build a tiny random BLIP-2 / InstructBLIP (demo text-generation baseline) into its path."""
from mmgenrec import logs
from mmgenrec.data.synthetic import vocabulary_corpus
from mmgenrec.models.tiny import build_tiny_blip

logs.setup(snakemake.log[0])
build_tiny_blip(snakemake.output[0], vocabulary_corpus(), kind=snakemake.params.kind, **snakemake.params.tiny)
