"""Run :func:`mmgenrec.finetune.train.finetune` in this process, or in ``nproc`` processes under ``torchrun``.

``python -m mmgenrec.finetune.launch SPEC.json [LOG]`` is what each ``torchrun`` worker runs: ``SPEC.json`` holds
the keyword arguments of ``finetune`` (paths, settings). On CPU the workers use DDP over gloo
(``ACCELERATE_USE_CPU=true``, since ``accelerate launch --cpu`` would silently start independent processes); on
GPU nccl, with DeepSpeed when ``spec["deepspeed"]`` names a config file (ZeRO-2 bf16:
``config/deepspeed_zero2.json``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from mmgenrec.io import atomic_path

log = logging.getLogger(__name__)


def deepspeed_for(deepspeed, nproc: int, one_process: bool = False) -> str | None:
    """The DeepSpeed config a run of ``nproc`` processes uses: none when ``deepspeed`` is empty, and none for one
    process unless ``one_process`` (``finetune.deepspeed_one_process``) asks for it: ZeRO-2 shards optimizer state
    across processes, so on one GPU it only adds the launcher and its own optimizer path."""
    if not deepspeed:
        return None
    if nproc <= 1 and not one_process:
        log.info("one training process: DeepSpeed (%s) off; set finetune.deepspeed_one_process: true to use it",
                 deepspeed)
        return None
    return str(deepspeed)


def run_finetune(spec: dict, nproc: int = 1, *, cpu: bool | None = None, log_path: str | None = None,
                 deepspeed_one_process: bool = False) -> None:
    """``finetune(**spec)`` here when ``nproc == 1`` and DeepSpeed is off (:func:`deepspeed_for`: one process
    runs without it unless ``deepspeed_one_process``); otherwise ``torchrun`` with ``nproc`` workers (DeepSpeed
    needs its launcher environment even for one process)."""
    from mmgenrec.finetune.train import finetune

    spec = dict(spec, deepspeed=deepspeed_for(spec.get("deepspeed"), nproc, deepspeed_one_process))
    if nproc <= 1 and not spec["deepspeed"]:
        finetune(**spec)
        return
    import torch

    if cpu is None:
        cpu = not torch.cuda.is_available() or spec.get("device") == "cpu"
    out = Path(spec["out_dir"])
    spec_path = out.parent / f".{out.name}.launch.json"
    with atomic_path(spec_path) as tmp:
        tmp.write_text(json.dumps(spec, default=str))
    env = dict(os.environ)
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={max(nproc, 1)}",
           "-m", "mmgenrec.finetune.launch", str(spec_path)] + ([log_path] if log_path else [])
    log.info("launching: %s", " ".join(cmd))
    try:
        subprocess.run(cmd, env=env, check=True, stdout=sys.stdout, stderr=sys.stderr)
    finally:
        spec_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    from mmgenrec import logs
    from mmgenrec.finetune.train import finetune

    argv = sys.argv[1:] if argv is None else argv
    logs.setup(argv[1] if len(argv) > 1 else None)
    spec = json.loads(Path(argv[0]).read_text())
    log.info("rank %s/%s starts", os.environ.get("RANK", 0), os.environ.get("WORLD_SIZE", 1))
    finetune(**spec)


if __name__ == "__main__":
    main()
