"""Snakemake adapter: enriched.json + split.json (+ usage.json, failures.jsonl) from a provided file or the API."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.enrich.run import build_enrichment

logs.setup(snakemake.log[0])
cfg = dict(snakemake.params.cfg)
build_enrichment(
    snakemake.input.item, Path(snakemake.output.enriched).parent, provided=snakemake.params.provided_path,
    item2id=snakemake.input.item2id, image_dir=snakemake.input.images, cache_path=snakemake.params.cache, **cfg,
)
