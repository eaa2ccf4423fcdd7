"""Snakemake adapter: MLLM4Rec / LlamaRec (kind llm_ranker) on one category."""
from mmgenrec import logs
from mmgenrec.methods.llm_ranker import run_llm_ranker

logs.setup(snakemake.log[0])
i = snakemake.input
run_llm_ranker(i.inter, i.item_json, i.valid, i.test, i.train, i.get("captions"), i.model, snakemake.output.metrics,
               snakemake.output.topk, cfg=snakemake.params.cfg, evaluation=snakemake.params.evaluation,
               method=snakemake.params.method, checkpoint_dir=snakemake.params.checkpoints)
