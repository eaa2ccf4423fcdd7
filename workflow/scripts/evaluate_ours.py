"""Snakemake adapter: trie-constrained beam search for every test user -> ranking metrics."""
from mmgenrec import logs
from mmgenrec.evaluate.seqrec import evaluate_seqrec

logs.setup(snakemake.log[0], snakemake.threads)
evaluate_seqrec(
    snakemake.input.model, snakemake.input.adapter, snakemake.input.inter, snakemake.input.index,
    snakemake.output.metrics, snakemake.output.topk, max_history=snakemake.params.max_history,
    device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"], **snakemake.params.cfg,
)
