"""Snakemake adapter: trie-constrained beam search for every test user and prompt template -> ranking metrics."""
from mmgenrec import logs
from mmgenrec.evaluate.seqrec import evaluate_seqrec

logs.setup(snakemake.log[0], snakemake.threads)
evaluate_seqrec(
    snakemake.input.model, snakemake.input.adapter, snakemake.input.inter, snakemake.input.index,
    snakemake.output.metrics, snakemake.output.topk, method=snakemake.wildcards.method,
    max_history=snakemake.params.max_history, codebook_size=snakemake.params.codebook_size,
    device=snakemake.params.model["device"], dtype=snakemake.params.model["dtype"], **snakemake.params.cfg,
)
