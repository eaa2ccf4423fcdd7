"""LoRA on the language model + trainable new item-token rows, trained with the HF Trainer.

One entry point, :func:`finetune`: a task mix (``mmgenrec.prompts.TASKS``) trained in one or more stages (the
``ours_multistage`` method trains the item<->index alignment tasks first, then seqrec), with checkpoints every
``save_steps`` optimizer steps into a directory *beside* the output (Snakemake deletes a failed job's output, not
this), resumed automatically when the run is started again with the same settings. The same code runs in one
process or under ``torchrun`` (DDP, gloo on CPU / nccl on GPU) and with a DeepSpeed config (ZeRO-2 bf16,
``config/deepspeed_zero2.json``); see :mod:`mmgenrec.finetune.launch`.

What trains, exactly: LoRA matrices on the language model's q/k/v/o/gate/up/down projections, and the rows of
the new item tokens in ``embed_tokens`` and ``lm_head`` (peft ``trainable_token_indices``). Nothing else: the
original embedding and LM-head rows stay bit-identical. Saved: the adapter (LoRA + new rows), the tokenizer and
processor with the item tokens, and ``token_meta.json``; never the full matrices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch

from mmgenrec.finetune.data import DEFAULT_TASKS, EpochMixDataset, MultimodalCollator, TextCollator, build_examples
from mmgenrec.finetune.lcrec_data import DEFAULT_LCREC_TASKS, build_lcrec_examples
from mmgenrec.io import InputError, atomic_dir, read_json, write_json
from mmgenrec.models.item_tokens import (
    LM_LORA_TARGET_REGEX,
    LORA_TARGET_REGEX,
    add_item_tokens,
    item_vocabulary,
    resize_and_init,
    tied,
)
from mmgenrec.models.loading import load_model
from mmgenrec.models.text_lm import TextProcessor

log = logging.getLogger(__name__)

# the task family's example builder (``prompt_family``): ours (mmgenrec.prompts) or LC-Rec's (mmgenrec.prompts_lcrec)
EXAMPLE_BUILDERS = {"ours": build_examples, "lcrec": build_lcrec_examples}


def lora_config(new_ids: list[int], is_tied: bool, r: int, alpha: int, dropout: float, text_lm: bool = False):
    from peft import LoraConfig

    tokens = list(new_ids) if is_tied else {"embed_tokens": list(new_ids), "lm_head": list(new_ids)}
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout,
        target_modules=LM_LORA_TARGET_REGEX if text_lm else LORA_TARGET_REGEX,
        trainable_token_indices=tokens, task_type="CAUSAL_LM",
    )


def prepare_model(model_dir, index: dict[int, list[str]], all_tokens: list[str], *, r=16, alpha=64, dropout=0.05,
                  device="auto", dtype="auto", seed=0):
    """Load the base VLM (or text LM), add the item tokens, wrap it with LoRA + trainable token rows."""
    from peft import get_peft_model

    model, processor = load_model(model_dir, device=device, dtype=dtype)
    text_lm = isinstance(processor, TextProcessor)
    n_base, new_ids = add_item_tokens(processor.tokenizer, all_tokens)
    resize_and_init(model, processor.tokenizer, n_base, seed=seed)
    is_tied = tied(model)  # before wrapping: peft's token wrappers hide the weight identity
    peft_model = get_peft_model(model, lora_config(new_ids, is_tied, r, alpha, dropout, text_lm))
    meta = {"n_base_tokens": n_base, "new_token_ids": [new_ids[0], new_ids[-1] + 1], "n_new_tokens": len(new_ids),
            "tied_embeddings": is_tied, "levels": max(len(v) for v in index.values()),
            "item_tokens": list(all_tokens), "lora": {"r": r, "alpha": alpha, "dropout": dropout}}
    return peft_model, processor, meta


def trainable_summary(model) -> dict:
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    return {"trainable_params": n_train, "all_params": n_all, "trainable_tensors": len(names),
            "trainable_non_lora": [n for n in names if "lora_" not in n]}


# finetune() arguments that do not change what is trained: where things go, how often to log/checkpoint
NOT_FINGERPRINTED = ("out_dir", "checkpoint_dir", "keep_checkpoints", "save_steps", "logging_steps", "callbacks")
INPUT_FILES = ("index_json", "inter_json", "item_json", "enriched_json", "split_json")


def run_fingerprint(args: dict) -> str:
    """Hash of everything that determines the run: every :func:`finetune` argument but :data:`NOT_FINGERPRINTED`
    (so a new or renamed setting is covered without being listed), the content of the input files and of every
    file in the image folder (not the model weights, which are large and named by path), and the world size."""
    settings = {k: v for k, v in args.items() if k not in NOT_FINGERPRINTED + INPUT_FILES + ("image_dir",)}
    settings["world_size"] = int(os.environ.get("WORLD_SIZE", 1))
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name in INPUT_FILES:
        f = args.get(name)
        h.update(f"{name}:".encode())
        if f and Path(f).is_file():
            h.update(Path(f).read_bytes())
    image_dir = args.get("image_dir")
    if image_dir and Path(image_dir).is_dir():
        for f in sorted(p for p in Path(image_dir).rglob("*") if p.is_file()):
            h.update(str(f.relative_to(image_dir)).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def warmup_steps_arg(warmup_ratio: float) -> float:
    """``TrainingArguments.warmup_steps`` for a warm-up over ``warmup_ratio`` of the steps: transformers 5 reads a
    value below 1 as that fraction and a value of 1 or more as a step count, so a ratio of 1 would silently mean
    one step; it is refused (as the schema does)."""
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must lie in [0, 1), got {warmup_ratio} (transformers would read "
                         f"{warmup_ratio} as a number of steps)")
    return float(warmup_ratio)


def _prepare_checkpoints(checkpoint_dir: Path | None, fingerprint: str, is_main: bool) -> None:
    """Keep ``checkpoint_dir`` only if it was written by a run with the same fingerprint; start it afresh otherwise."""
    if checkpoint_dir is None or not is_main:
        return
    stamp = checkpoint_dir / "run.json"
    if checkpoint_dir.exists():
        old = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
        if old != fingerprint:
            log.info("checkpoints in %s are from other settings or inputs; starting afresh", checkpoint_dir)
            shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"fingerprint": fingerprint})


def epoch_mix_callback(dataset: EpochMixDataset):
    """A TrainerCallback that gives ``dataset`` the epoch about to run: ``floor(state.epoch)``, which the Trainer
    keeps as ``epoch + (step + 1) / steps_in_epoch`` (exactly ``e`` when epoch ``e`` starts, ``e + fraction`` in a
    checkpoint taken inside epoch ``e``, so a resumed run re-draws the same mix). Driven from the callback, not
    the dataloader, because accelerate forwards ``set_epoch`` to a dataset only when its sampler has none."""
    from transformers import TrainerCallback

    class EpochMixCallback(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            dataset.set_epoch(int(math.floor(state.epoch + 1e-9)) if state.epoch else 0)

    return EpochMixCallback()


def _resolve_device(device: str) -> str:
    """Under torchrun each process takes its own GPU (``LOCAL_RANK``)."""
    if device in ("auto", "cuda") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def resolve_stages(tasks: dict, stages: list[dict] | None, epochs: float) -> list[dict]:
    """``stages`` (each ``{"tasks": [names], "epochs": e}``) with each task's spec from ``tasks``; one stage of every
    task when ``stages`` is not given."""
    if not stages:
        return [{"tasks": dict(tasks), "epochs": epochs}]
    out = []
    for k, st in enumerate(stages):
        names = st["tasks"]
        unknown = [t for t in names if t not in tasks]
        if unknown:
            raise ValueError(f"stage {k}: tasks {unknown} are not configured in finetune.tasks")
        out.append({"tasks": {t: tasks[t] for t in names}, "epochs": float(st.get("epochs", epochs))})
    return out


def finetune(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    index_json: str | Path,
    inter_json: str | Path | None = None,
    item_json: str | Path | None = None,
    image_dir: str | Path | None = None,
    enriched_json: str | Path | None = None,
    split_json: str | Path | None = None,
    codebook_size: int | None = None,
    all_tokens: list[str] | None = None,
    tasks: dict[str, dict] | None = None,
    stages: list[dict] | None = None,
    method: str = "ours",
    max_history: int = 20,
    max_chars: int = 2000,
    lora_r: int = 16,
    lora_alpha: int = 64,
    lora_dropout: float = 0.05,
    epochs: float = 3.0,
    batch_size: int = 16,
    grad_accum: int = 1,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.05,
    padding_side: str = "right",
    gradient_checkpointing: bool = False,
    deepspeed: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    save_steps: int = 0,
    keep_checkpoints: bool = False,
    max_steps: int = -1,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    logging_steps: int = 10,
    callbacks: tuple = (),
    prompt_family: str = "ours",
):
    """Train LoRA + the item-token rows on a task mix, stage by stage; save adapter + processor + ``token_meta.json``
    + ``train_log.json`` to ``out_dir`` (written atomically by the main process). Returns ``(model, processor)``.

    The item vocabulary comes from the index (its number of levels) and ``codebook_size`` (plus ``all_tokens`` first
    when given). ``checkpoint_dir`` (default: ``<out_dir>/../checkpoints``) receives a checkpoint every ``save_steps``
    optimizer steps (0: only at the end of each stage); a rerun with the same settings and inputs resumes from the
    last one, another run discards them. They are removed after a successful save unless ``keep_checkpoints``.
    """
    args = dict(locals())  # every argument, for the checkpoint fingerprint
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from mmgenrec.quantize.run import load_index  # the validation evaluation applies (collisions allowed)

    t0 = time.time()
    set_seed(seed)
    out_dir = Path(out_dir)
    warmup = warmup_steps_arg(warmup_ratio)
    index = load_index(index_json, allow_collisions=True, codebook_size=codebook_size)
    tokens = item_vocabulary(index, codebook_size, all_tokens)
    sequences = read_json(inter_json) if inter_json else None
    for user, seq in (sequences or {}).items():
        unknown = [i for i in seq if i not in index]
        if unknown:
            raise InputError(f"{inter_json}: user {user}: item {unknown[0]} is not in {index_json}")
    items = read_json(item_json) if item_json else None
    enriched = read_json(enriched_json) if enriched_json else None
    train_items = None
    if split_json:
        split = read_json(split_json)
        if not isinstance(split, dict) or not isinstance(split.get("train"), list):
            raise InputError(f"{split_json}: expected {{\"train\": [item ids], \"heldout\": [item ids]}}")
        train_items = {str(i) for i in split["train"]}
    if prompt_family not in EXAMPLE_BUILDERS:
        raise ValueError(f"prompt_family must be one of {sorted(EXAMPLE_BUILDERS)}, got {prompt_family!r}")
    if tasks is None:
        tasks = DEFAULT_LCREC_TASKS if prompt_family == "lcrec" else DEFAULT_TASKS
    plan = resolve_stages(tasks, stages, epochs)
    device = _resolve_device(device)

    fingerprint = run_fingerprint(dict(args, tasks=tasks, tokens=tokens))
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else out_dir.parent / "checkpoints"
    is_main = int(os.environ.get("RANK", 0)) == 0
    _prepare_checkpoints(checkpoint_dir, fingerprint, is_main)

    model, processor, meta = prepare_model(model_dir, index, tokens, r=lora_r, alpha=lora_alpha, dropout=lora_dropout,
                                           device=device, dtype=dtype, seed=seed)
    summary = trainable_summary(model)
    log.info("trainable: %s", {k: v for k, v in summary.items() if k != "trainable_non_lora"})
    on_gpu = next(model.parameters()).device.type == "cuda"
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    collator = (TextCollator if isinstance(processor, TextProcessor) else MultimodalCollator)(processor, padding_side)
    stage_logs = []
    for k, stage in enumerate(plan):
        build = EXAMPLE_BUILDERS[prompt_family]

        def mix(epoch, k=k, stage=stage, build=build):  # epoch e of stage k: drawn with seed + k + e
            return build(stage["tasks"], index=index, sequences=sequences, items=items, image_dir=image_dir,
                                  enriched=enriched, train_items=train_items, max_history=max_history,
                                  max_chars=max_chars, seed=seed + k, epoch=epoch)

        dataset = EpochMixDataset(processor, mix)
        if not len(dataset):
            raise InputError(f"stage {k}: no training examples for tasks {sorted(stage['tasks'])}")
        examples = dataset.examples
        stage_dir = checkpoint_dir / f"stage{k}"
        args = TrainingArguments(
            output_dir=str(stage_dir), per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
            num_train_epochs=stage["epochs"], max_steps=max_steps, learning_rate=lr, weight_decay=weight_decay,
            warmup_steps=warmup, lr_scheduler_type="cosine", logging_steps=logging_steps,
            save_strategy="steps", save_steps=save_steps if save_steps > 0 else 10**9, save_total_limit=2,
            report_to=[], seed=seed + k, data_seed=seed + k, use_cpu=not on_gpu,
            bf16=on_gpu and torch.cuda.is_bf16_supported(), remove_unused_columns=False, dataloader_num_workers=0,
            activation_checkpointing=gradient_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
            deepspeed=str(deepspeed) if deepspeed else None, ddp_backend="gloo" if distributed and not on_gpu else None,
            disable_tqdm=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                          callbacks=[epoch_mix_callback(dataset), *callbacks])
        resume = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
        if resume:
            log.info("stage %d: resuming from %s", k, resume)
        result = trainer.train(resume_from_checkpoint=resume)
        curve = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
        counts = {t: sum(e["task"] == t for e in examples) for t in stage["tasks"]}
        stage_logs.append({
            "stage": k, "tasks": counts, "epochs": stage["epochs"], "examples": len(dataset),
            "steps": trainer.state.global_step, "train_loss": result.training_loss, "resumed_from": resume,
            "first_loss": curve[0]["loss"] if curve else math.nan, "last_loss": curve[-1]["loss"] if curve else math.nan,
            "curve": curve,
        })
        log.info("stage %d (%s): %d steps, loss %.3f", k, ", ".join(counts), trainer.state.global_step,
                 result.training_loss)
    if trainer.is_world_process_zero():
        meta.update({"base_model": str(model_dir), "method": method, "task": "multitask" if len(tasks) > 1 else
                     next(iter(tasks)), "tasks": tasks, "stages": [sorted(s["tasks"]) for s in plan],
                     "max_history": max_history})
        if prompt_family != "ours":
            meta["prompt_family"] = prompt_family
        last = stage_logs[-1]
        with atomic_dir(out_dir) as tmp:
            # never the full matrices: peft's "auto" would save them for a resized text LM (its config's vocab_size)
            model.save_pretrained(tmp, save_embedding_layers=False)
            processor.save_pretrained(tmp)
            write_json(tmp / "token_meta.json", meta)
            write_json(tmp / "train_log.json", {
                "examples": sum(s["examples"] for s in stage_logs), "steps": sum(s["steps"] for s in stage_logs),
                "train_loss": last["train_loss"], "first_loss": stage_logs[0]["first_loss"],
                "last_loss": last["last_loss"], "curve": last["curve"], "stages": stage_logs,
                "world_size": int(os.environ.get("WORLD_SIZE", 1)), "deepspeed": bool(deepspeed),
                "seconds": round(time.time() - t0, 2), **summary,
            })
        if not keep_checkpoints:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        log.info("saved adapter to %s", out_dir)
    return model, processor


def finetune_seqrec(
    model_dir: str | Path,
    inter_json: str | Path,
    index_json: str | Path,
    out_dir: str | Path,
    *,
    all_tokens: list[str],
    template_ids: tuple[int, ...] | None = None,
    tasks: dict | None = None,
    multistage: list | None = None,
    **kwargs,
):
    """The seqrec task alone (kept for callers such as the ID ablation): :func:`finetune` with
    ``tasks={"seqrec": ...}``. Accepts the whole ``finetune`` config section: the other tasks and ``multistage``
    are ignored; seqrec's templates come from ``template_ids``, else ``tasks.seqrec.templates``, else template 0."""
    if template_ids is None:
        template_ids = ((tasks or {}).get("seqrec") or {}).get("templates") or (0,)
    kwargs.pop("stages", None)
    from mmgenrec.finetune.launch import deepspeed_for

    kwargs.pop("processes", None)  # a launcher setting: this call trains in the calling process, one process
    kwargs["deepspeed"] = deepspeed_for(kwargs.get("deepspeed"), 1, kwargs.pop("deepspeed_one_process", False))
    if kwargs.get("checkpoint_dir") is None:
        kwargs["checkpoint_dir"] = Path(out_dir).parent / f".{Path(out_dir).name}.checkpoints"
    return finetune(model_dir, out_dir, index_json=index_json, inter_json=inter_json, all_tokens=all_tokens,
                    tasks={"seqrec": {"weight": 1.0, "templates": list(template_ids)}}, **kwargs)
