"""DeepSpeed on the real path (issue 18, item 1): one process (one GPU) trains without DeepSpeed unless
`finetune.deepspeed_one_process` asks for it; with it, the real config's ZeRO-2 file runs one training step through
the same launcher (where deepspeed and a GPU exist; skipped with the reason otherwise)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from mmgenrec.finetune.launch import deepspeed_for, run_finetune
from test_finetune import data, files  # noqa: F401  (the module's data fixture)

REPO = Path(__file__).resolve().parents[1]


def real_spec(tiny, data, out, **over):  # noqa: F811
    """The workflow's spec (workflow/scripts/finetune.py) from config/config.yaml's finetune section, on the tiny
    model and data, one optimizer step."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["finetune"]
    one_process = cfg.pop("deepspeed_one_process", False)
    cfg.pop("processes", None)
    cfg.pop("multistage", None)
    cfg["deepspeed"] = str(REPO / cfg["deepspeed"]) if cfg.get("deepspeed") else None
    cfg.update({"max_steps": 1, "batch_size": 2, "grad_accum": 1, "save_steps": 0, "device": "auto", **over})
    spec = dict(model_dir=str(tiny), out_dir=str(out), method="ours",
                **{k: str(v) if isinstance(v, Path) else v for k, v in files(data).items()}, **cfg)
    return spec, one_process


def test_deepspeed_is_for_several_processes_unless_asked():
    path = "config/deepspeed_zero2.json"
    assert deepspeed_for(path, 1) is None and deepspeed_for(path, 1, one_process=False) is None
    assert deepspeed_for(path, 2) == path and deepspeed_for(path, 1, one_process=True) == path
    assert deepspeed_for("", 4, one_process=True) is None and deepspeed_for(None, 2) is None


def test_one_process_trains_without_deepspeed_by_default(tiny, data, tmp_path, one_torch_thread):  # noqa: F811
    spec, one_process = real_spec(tiny, data, tmp_path / "model", device="cpu")
    assert spec["deepspeed"] and one_process is False  # the real config: DeepSpeed on, one process without it
    run_finetune(spec, 1, cpu=True, deepspeed_one_process=one_process)  # in this process, no launcher
    log = json.loads((tmp_path / "model" / "train_log.json").read_text())
    assert log["deepspeed"] is False and log["world_size"] == 1 and log["steps"] == 1


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="deepspeed is not installed (pip install '.[deepspeed]'; never into the shared venv)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="DeepSpeed ZeRO-2 bf16 needs a CUDA GPU")
def test_real_zero2_config_trains_one_step_through_the_launcher(tiny, data, tmp_path):  # noqa: F811
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    spec, _ = real_spec(tiny, data, tmp_path / "model")
    # the ZeRO-2 config as the Trainer resolves it from the real settings
    hf = HfTrainerDeepSpeedConfig(spec["deepspeed"])
    hf.trainer_config_process(TrainingArguments(output_dir=str(tmp_path / "x"), per_device_train_batch_size=2,
                                                gradient_accumulation_steps=1, bf16=True, report_to=[]))
    parsed = DeepSpeedConfig(hf.config)
    assert parsed.zero_optimization_stage == 2 and parsed.bfloat16_enabled
    assert parsed.train_micro_batch_size_per_gpu == 2
    run_finetune(spec, 1, deepspeed_one_process=True)  # torchrun, one worker, DeepSpeed
    log = json.loads((tmp_path / "model" / "train_log.json").read_text())
    assert log["deepspeed"] is True and log["steps"] == 1
