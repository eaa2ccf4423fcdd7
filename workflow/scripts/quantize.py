"""Snakemake adapter: semantic IDs (tokenizer + collision policy from the config) -> index, stats, plot,
checkpoints, and the vectors decoded from the codes."""
from mmgenrec import logs
from mmgenrec.quantize.run import quantize_file

logs.setup(snakemake.log[0], snakemake.threads)
quantize_file(snakemake.input.npy, snakemake.output.index, snakemake.output.stats,
              plot_path=snakemake.output.get("plot"), checkpoint_dir=snakemake.output.get("checkpoints"),
              reconstruction_path=snakemake.output.get("reconstruction"), **snakemake.params.cfg)
