"""Snakemake adapter: LC-Rec (kind lm_genrec) trained through the finetune stage (text LM + LoRA + ID rows)."""
from mmgenrec import logs
from mmgenrec.methods.lm_genrec import run_finetune_lm

logs.setup(snakemake.log[0], snakemake.threads)
run_finetune_lm(
    snakemake.params.cfg, model_dir=snakemake.input.model, out_dir=snakemake.output[0],
    index_json=snakemake.input.index, inter_json=snakemake.input.inter, item_json=snakemake.input.item,
    checkpoint_dir=snakemake.params.checkpoints, method=snakemake.wildcards.method,
    codebook_size=snakemake.params.codebook_size,
)
