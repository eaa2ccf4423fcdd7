"""Logging for workflow scripts: everything (logging, warnings, tqdm bars) goes to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import os
import sys


def setup(log_path: str | None, threads: int | None = None) -> None:
    """Send logging, warnings and stderr to ``log_path`` (append) and cap torch's CPU threads at ``threads``."""
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        stream = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives for the process
        sys.stderr = sys.stdout = stream
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    logging.captureWarnings(True)
    # Which GPUs the scheduler gave this job (SLURM sets it for --gpus jobs only); tests/test_slurm.py reads it.
    logging.getLogger("mmgenrec.logs").info("CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import torch

        torch.set_num_threads(threads)
