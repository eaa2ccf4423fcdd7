"""Kind ``lm_genrec`` (LC-Rec): a text-only causal LM (LLaMA / Qwen2 family, a local folder) with LoRA and new
item-ID tokens, trained on LC-Rec's task family (:mod:`mmgenrec.prompts_lcrec`: seqrec, item2index, index2item,
fusionseqrec) over the method's id set, and evaluated by trie-constrained beam search over the seqrec prompt.

It runs through the project's own stages, not a copy: :func:`mmgenrec.finetune.train.finetune` (with
``prompt_family="lcrec"``; the text LM and its tokenizer take the Qwen2.5-VL path through
:class:`mmgenrec.models.text_lm.TextProcessor`) and :func:`mmgenrec.evaluate.seqrec.evaluate_seqrec`. This module
only maps a method's config entry onto those two calls.
"""

from __future__ import annotations

from collections.abc import Mapping

# method-entry keys that go to finetune() under the same name
FINETUNE_KEYS = ("tasks", "max_history", "max_chars", "lora_r", "lora_alpha", "lora_dropout", "epochs", "batch_size",
                 "grad_accum", "lr", "weight_decay", "warmup_ratio", "padding_side", "seed", "save_steps",
                 "max_steps", "keep_checkpoints", "logging_steps")
DEFAULTS = {"max_history": 20, "num_beams": 20, "eval_batch_size": 16, "template_ids": [0]}


def finetune_spec(cfg: Mapping, *, model_dir, out_dir, index_json, inter_json, item_json, checkpoint_dir,
                  method: str, codebook_size: int | None) -> dict:
    """The keyword arguments of :func:`mmgenrec.finetune.train.finetune` for an ``lm_genrec`` method entry."""
    model = cfg.get("model", {})
    spec = {k: cfg[k] for k in FINETUNE_KEYS if k in cfg}
    spec.setdefault("max_history", DEFAULTS["max_history"])
    spec.update(model_dir=model_dir, out_dir=out_dir, index_json=index_json, inter_json=inter_json,
                item_json=item_json, checkpoint_dir=checkpoint_dir, method=method, codebook_size=codebook_size,
                prompt_family="lcrec", device=model.get("device", "auto"), dtype=model.get("dtype", "auto"))
    return spec


def run_finetune_lm(cfg: Mapping, **paths) -> None:
    from mmgenrec.finetune.launch import run_finetune

    run_finetune(finetune_spec(cfg, **paths), 1)


def run_evaluate_lm(cfg: Mapping, evaluation: Mapping, *, model_dir, adapter_dir, inter_json, index_json,
                    metrics_path, topk_path, method: str, codebook_size: int | None) -> dict:
    """Constrained beam search over LC-Rec's seqrec prompt (``template_ids``), scored by the one metric code."""
    from mmgenrec.evaluate.seqrec import evaluate_seqrec

    model = cfg.get("model", {})
    return evaluate_seqrec(
        model_dir, adapter_dir, inter_json, index_json, metrics_path, topk_path, method=method,
        num_beams=cfg.get("num_beams", DEFAULTS["num_beams"]),
        batch_size=cfg.get("eval_batch_size", DEFAULTS["eval_batch_size"]),
        max_history=cfg.get("max_history", DEFAULTS["max_history"]),
        template_ids=cfg.get("template_ids", DEFAULTS["template_ids"]), codebook_size=codebook_size,
        device=model.get("device", "auto"), dtype=model.get("dtype", "auto"), prompt_family="lcrec", **evaluation)
