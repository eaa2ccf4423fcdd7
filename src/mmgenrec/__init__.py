"""mmgenrec: unified multimodal generative recommendation as a Snakemake workflow.

One subpackage per pipeline stage; stages talk to each other only through files:

    data      raw Amazon-2018 files (real or synthetic) -> LC-Rec-style prepared files
    models    building (tiny, demo) and loading (any size) Qwen2.5-VL checkpoints
    embed     item vectors from image + text
    quantize  RQ-VAE semantic IDs
    finetune  LoRA + new item-token rows on the VLM
    evaluate  constrained beam search, ranking metrics, baselines, summary
"""

__version__ = "0.1.0"
