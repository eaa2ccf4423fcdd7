"""Snakemake adapter: fetch a category's published review + metadata files (resumable, verified)."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.data.download import fetch_category_raw
from mmgenrec.io import write_json

logs.setup(snakemake.log[0])
cfg = snakemake.params.cfg
manifest = fetch_category_raw(snakemake.wildcards.category, Path(snakemake.output.meta).parent,
                              reviews_url_template=cfg["reviews_url"], meta_url_template=cfg["meta_url"])
write_json(snakemake.output.done, manifest)
