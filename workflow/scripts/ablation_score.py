"""Snakemake adapter: score one ablation id set downstream (seqrec finetuning + constrained evaluation).

Cheap settings come from the `ablation` section. An id set with shared IDs (policy `none`) is scored with the
items behind each shared ID merged into one (see mmgenrec.quantize.ablation.collapse_collisions).
"""
import tempfile
from pathlib import Path

from mmgenrec import logs
from mmgenrec.evaluate.seqrec import evaluate_seqrec
from mmgenrec.finetune.train import finetune_seqrec
from mmgenrec.quantize.ablation import collapse_collisions
from mmgenrec.models.item_tokens import item_vocabulary
from mmgenrec.quantize.run import load_index

logs.setup(snakemake.log[0], snakemake.threads)
out = Path(snakemake.output.metrics)
runtime = snakemake.params.model
with tempfile.TemporaryDirectory(dir=out.parent, prefix=".score.") as scratch:
    scratch = Path(scratch)
    index, inter = snakemake.input.index, snakemake.input.inter
    collapse_collisions(index, inter, scratch / "index.json", scratch / "inter.json")
    index, inter = scratch / "index.json", scratch / "inter.json"  # identical to the inputs when no ID is shared
    vocab = item_vocabulary(load_index(index), snakemake.params.codebook_size)
    finetune_seqrec(snakemake.input.model, inter, index, scratch / "model", all_tokens=vocab,
                    device=runtime["device"], dtype=runtime["dtype"], **snakemake.params.finetune)
    evaluate_seqrec(snakemake.input.model, scratch / "model", inter, index, snakemake.output.metrics,
                    snakemake.output.topk, max_history=snakemake.params.finetune["max_history"],
                    device=runtime["device"], dtype=runtime["dtype"], **snakemake.params.evaluate)
