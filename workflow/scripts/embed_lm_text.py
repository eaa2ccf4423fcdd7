"""Snakemake adapter: the lm_text view (text encoder, per-field mean pooling as LC-Rec) -> lm_text.npy."""
from mmgenrec import logs
from mmgenrec.embed.text_encoder import embed_lm_text

logs.setup(snakemake.log[0], snakemake.threads)
embed_lm_text(snakemake.input.model, snakemake.input.item, snakemake.output.npy, snakemake.output.meta,
              **snakemake.params.cfg)
