"""Snakemake adapter: LoRA + new item-token rows on the VLM, seqrec task."""
from mmgenrec import logs
from mmgenrec.finetune.train import finetune_seqrec
from mmgenrec.quantize.run import code_tokens

logs.setup(snakemake.log[0], snakemake.threads)
q = snakemake.params.quantize
finetune_seqrec(
    snakemake.input.model, snakemake.input.inter, snakemake.input.index, snakemake.output[0],
    all_tokens=code_tokens(q["levels"], q["codebook_size"]), device=snakemake.params.model["device"],
    dtype=snakemake.params.model["dtype"], **snakemake.params.cfg,
)
