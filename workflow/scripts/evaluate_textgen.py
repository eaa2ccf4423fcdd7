"""Snakemake adapter: mmitemenrich generations of one system on the held-out enriched items -> text metrics."""
from mmgenrec import logs
from mmgenrec.evaluate.textgen import evaluate_textgen

logs.setup(snakemake.log[0], snakemake.threads)
evaluate_textgen(
    snakemake.params.kind, snakemake.input.model, snakemake.input.item_json, snakemake.input.images,
    snakemake.input.enriched, snakemake.input.split, snakemake.output.metrics, snakemake.output.generations,
    system=snakemake.wildcards.method, adapter_dir=snakemake.input.get("adapter"),
    device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"], **snakemake.params.cfg,
)
