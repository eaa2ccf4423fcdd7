"""Snakemake adapter: `ours_merged` for one category = weighted average of every category's LoRA adapter."""
from mmgenrec import logs
from mmgenrec.finetune.merge import merge_for_category

logs.setup(snakemake.log[0])
merge_for_category(dict(zip(snakemake.params.categories, snakemake.input.adapters)), snakemake.wildcards.category,
                   snakemake.output[0], weighting=snakemake.params.cfg.get("weighting", "uniform"))
