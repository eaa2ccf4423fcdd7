"""Snakemake adapter: build the demo's tiny random text LM (Qwen2ForCausalLM, tokenizer trained locally on the
demo's words and LC-Rec's prompts) into text_encoder.path."""
from mmgenrec import logs
from mmgenrec.data.synthetic import vocabulary_corpus
from mmgenrec.models.tiny import build_tiny_qwen2
from mmgenrec.prompts_lcrec import prompt_corpus

logs.setup(snakemake.log[0])
build_tiny_qwen2(snakemake.output[0], vocabulary_corpus() + prompt_corpus(), **snakemake.params.tiny)
