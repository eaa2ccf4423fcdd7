"""Snakemake adapter: RQ-VAE semantic IDs, collision-free."""
from mmgenrec import logs
from mmgenrec.quantize.run import quantize_file

logs.setup(snakemake.log[0], snakemake.threads)
quantize_file(snakemake.input.npy, snakemake.output.index, snakemake.output.stats, **snakemake.params.cfg)
