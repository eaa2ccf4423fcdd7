"""Snakemake adapter: build the demo's tiny random Qwen2.5-VL (tokenizer trained locally) into model.path."""
from mmgenrec import logs
from mmgenrec.data.synthetic import vocabulary_corpus
from mmgenrec.models.tiny import build_tiny_qwen25vl

logs.setup(snakemake.log[0])
build_tiny_qwen25vl(snakemake.output[0], vocabulary_corpus(), **snakemake.params.tiny)
