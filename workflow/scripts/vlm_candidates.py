"""Snakemake adapter: kind vlm_candidates -> train on the training part, select on valid, rank, write the metrics."""
from mmgenrec import logs
from mmgenrec.methods.vlm_candidates import run_vlm_candidates

logs.setup(snakemake.log[0], snakemake.threads)
run_vlm_candidates(
    snakemake.input.model, snakemake.input.inter, snakemake.input.item, snakemake.input.images,
    snakemake.output.metrics, snakemake.output.topk, cfg=snakemake.params.cfg,
    evaluation=snakemake.params.evaluation, checkpoint_dir=snakemake.params.checkpoints,
    method=snakemake.wildcards.method, device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"],
)
