"""Snakemake adapter: caption every item image (captions section) -> results/<cat>/captions/captions.json."""
from mmgenrec import logs
from mmgenrec.methods.captions import caption_items

logs.setup(snakemake.log[0])
caption_items(snakemake.input.item_json, snakemake.input.images, snakemake.input.model, snakemake.output[0],
              **snakemake.params.cfg)
