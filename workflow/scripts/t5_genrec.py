"""Snakemake adapter: TIGER (kind t5_genrec) on the method's id set."""
from mmgenrec import logs
from mmgenrec.methods.t5_genrec import run_t5_genrec

logs.setup(snakemake.log[0], snakemake.threads)
run_t5_genrec(snakemake.input.inter, snakemake.input.index, snakemake.output.metrics, snakemake.output.topk,
              snakemake.output.model, cfg=snakemake.params.cfg, evaluation=snakemake.params.evaluation,
              checkpoint_dir=snakemake.params.checkpoints, method=snakemake.params.method)
