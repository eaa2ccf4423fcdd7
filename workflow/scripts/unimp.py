"""Snakemake adapter: kind unimp -> train on the training part, select on valid, rank, write the metrics."""
from mmgenrec import logs
from mmgenrec.methods.unimp import run_unimp

logs.setup(snakemake.log[0], snakemake.threads)
run_unimp(
    snakemake.input.model, snakemake.input.inter, snakemake.input.item, snakemake.input.images,
    snakemake.output.metrics, snakemake.output.topk, cfg=snakemake.params.cfg,
    evaluation=snakemake.params.evaluation, checkpoint_dir=snakemake.params.checkpoints,
    method=snakemake.wildcards.method, device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"],
)
