"""Snakemake adapter: popularity baseline on the same split and metric code."""
from mmgenrec import logs
from mmgenrec.evaluate.popularity import evaluate_popularity

logs.setup(snakemake.log[0])
cfg = snakemake.params.cfg
evaluate_popularity(snakemake.input.inter, snakemake.output.metrics, snakemake.output.topk,
                    split=cfg["split"], top_k=cfg["top_k"])
