"""Snakemake adapter: multitask LoRA + item-token finetuning (one process, or torchrun workers)."""
from mmgenrec import logs
from mmgenrec.finetune.launch import run_finetune

logs.setup(snakemake.log[0], snakemake.threads)
cfg = dict(snakemake.params.cfg)
cfg.pop("processes", None)
one_process = cfg.pop("deepspeed_one_process", False)
cfg["deepspeed"] = cfg.get("deepspeed") or None
spec = dict(
    model_dir=snakemake.input.model, out_dir=snakemake.output[0], index_json=snakemake.input.index,
    inter_json=snakemake.input.inter, item_json=snakemake.input.item, image_dir=snakemake.input.images,
    enriched_json=snakemake.input.get("enriched"), split_json=snakemake.input.get("split"),
    codebook_size=snakemake.params.codebook_size, method=snakemake.params.method,
    checkpoint_dir=snakemake.params.checkpoints, device=snakemake.params.model["device"],
    dtype=snakemake.params.model["dtype"], **cfg,
)
run_finetune(spec, snakemake.params.processes, log_path=snakemake.log[0], deepspeed_one_process=one_process)
