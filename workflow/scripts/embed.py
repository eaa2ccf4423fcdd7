"""Snakemake adapter: one Qwen2.5-VL vector per item (view mm: image + text; text; image)."""
from mmgenrec import logs
from mmgenrec.embed.embed import embed_items

logs.setup(snakemake.log[0], snakemake.threads)
embed_items(
    snakemake.input.model, snakemake.input.item, snakemake.input.images, snakemake.output.npy,
    snakemake.output.meta, device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"],
    view=snakemake.wildcards.get("view", "mm"), **snakemake.params.cfg,
)
