"""Snakemake adapter: item-to-item quality of the raw embeddings, their reconstruction from the semantic IDs and
the finetuned ID-token rows."""
from mmgenrec import logs
from mmgenrec.evaluate.i2i import evaluate_i2i

logs.setup(snakemake.log[0], snakemake.threads)
evaluate_i2i(
    snakemake.input.inter, snakemake.input.npy, snakemake.input.index, snakemake.output[0],
    reconstruction_npy=snakemake.input.reconstruction, base_dir=snakemake.input.model, adapters=dict(zip(snakemake.params.methods, snakemake.input.adapters)),
    device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"],
)
