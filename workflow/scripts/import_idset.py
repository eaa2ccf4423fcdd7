"""Snakemake adapter: a ready index file -> checked id set (results/<cat>/ids/<idset>/index.json + stats.json)."""
from mmgenrec import logs
from mmgenrec.quantize.imported import import_index

logs.setup(snakemake.log[0])
import_index(snakemake.input.source, snakemake.input.inter, snakemake.output.index, snakemake.output.stats,
             collisions=snakemake.params.collisions)
