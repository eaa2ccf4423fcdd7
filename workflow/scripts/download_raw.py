"""Snakemake adapter: the manifest of a category's two downloaded files (raw.done), from their jobs' entries."""
from mmgenrec import logs
from mmgenrec.data.download import write_manifest
from mmgenrec.io import read_json

logs.setup(snakemake.log[0])
write_manifest(snakemake.output.done, [read_json(path) for path in snakemake.input.entries])
