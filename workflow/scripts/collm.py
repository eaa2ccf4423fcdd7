"""Snakemake adapter: TALLRec / CoLLM / CoLLM-FaissRet (kind collm) on one category."""
from mmgenrec import logs
from mmgenrec.methods.collm import run_collm

logs.setup(snakemake.log[0])
i, o = snakemake.input, snakemake.output
run_collm(i.inter, i.item_json, i.get("valid"), i.get("test"), i.model, o.metrics, o.topk, o.get("model"),
          lora_in=i.get("lora"), collm_in=i.get("collm"), cfg=snakemake.params.cfg,
          evaluation=snakemake.params.evaluation, method=snakemake.params.method,
          checkpoint_dir=snakemake.params.get("checkpoints"))
