"""Snakemake adapter: popularity baseline on the same split, users and metric code."""
from mmgenrec import logs
from mmgenrec.evaluate.popularity import evaluate_popularity

logs.setup(snakemake.log[0])
evaluate_popularity(snakemake.input.inter, snakemake.output.metrics, snakemake.output.topk,
                    **snakemake.params.evaluation)
