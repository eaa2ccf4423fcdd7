"""Snakemake adapter: a sequential ID baseline (SASRec / BERT4Rec / GRU4Rec / LRURec) and its candidate lists."""
from pathlib import Path

from mmgenrec import logs
from mmgenrec.methods.sequential import run_sequential

logs.setup(snakemake.log[0], threads=snakemake.threads)
run_sequential(snakemake.input.inter, snakemake.output.metrics, snakemake.output.topk,
               Path(snakemake.output.recall).parent, snakemake.output.train_log, cfg=snakemake.params.cfg,
               evaluation=snakemake.params.evaluation, method=snakemake.params.method,
               checkpoints=snakemake.params.checkpoints)
