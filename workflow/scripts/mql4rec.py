"""Snakemake adapter: MQL4Rec (kind mql4rec) on the method's text and image id sets."""
from mmgenrec import logs
from mmgenrec.methods.mql4rec import run_mql4rec

out = snakemake.output
logs.setup(snakemake.log[0], snakemake.threads)
run_mql4rec(snakemake.input.inter, snakemake.input.text, snakemake.input.image, out.metrics, out.topk, out.model,
            cfg=snakemake.params.cfg, evaluation=snakemake.params.evaluation,
            checkpoint_dir=snakemake.params.checkpoints, method=snakemake.params.method,
            modality_outputs={"text": (out.text_metrics, out.text_topk), "image": (out.image_metrics, out.image_topk)})
