"""Snakemake adapter: fetch one of a category's published files (reviews or metadata; resumable, verified)."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.data.download import fetch_raw_file
from mmgenrec.io import write_json

logs.setup(snakemake.log[0])
entry = fetch_raw_file(snakemake.wildcards.category, snakemake.params.kind, snakemake.params.url,
                       Path(snakemake.output.file).parent)
write_json(snakemake.output.entry, entry)
