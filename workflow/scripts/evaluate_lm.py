"""Snakemake adapter: LC-Rec (kind lm_genrec) through the seqrec evaluation (trie-constrained beam search)."""
from mmgenrec import logs
from mmgenrec.methods.lm_genrec import run_evaluate_lm

logs.setup(snakemake.log[0], snakemake.threads)
run_evaluate_lm(
    snakemake.params.cfg, snakemake.params.evaluation, model_dir=snakemake.input.model,
    adapter_dir=snakemake.input.adapter, inter_json=snakemake.input.inter, index_json=snakemake.input.index,
    metrics_path=snakemake.output.metrics, topk_path=snakemake.output.topk, method=snakemake.wildcards.method,
    codebook_size=snakemake.params.codebook_size,
)
