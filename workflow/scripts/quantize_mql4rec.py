"""Snakemake adapter: MQL4Rec text + image semantic IDs in one index."""
from mmgenrec import logs
from mmgenrec.quantize.run import quantize_mql4rec

logs.setup(snakemake.log[0], snakemake.threads)
cfg = {k: v for k, v in snakemake.params.cfg.items() if k != "view"}  # the views are fixed: text, image
quantize_mql4rec(snakemake.input.text, snakemake.input.image, snakemake.output.index, snakemake.output.stats, **cfg)
