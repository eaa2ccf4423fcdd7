"""Shared fixtures: the repository, the real public data slices (tests skip when absent), a tiny Qwen2.5-VL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mmgenrec.data.synthetic import vocabulary_corpus
from mmgenrec.models.tiny import build_tiny_qwen25vl

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMGENREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """The folder of real public slices (``../shared/data``); the test is skipped where it is not present."""
    if not SHARED.is_dir():
        pytest.skip(f"real data slices not found at {SHARED} (set MMGENREC_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved to disk (load it with ``from_pretrained``; never write into it)."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_qwen25vl(path, vocabulary_corpus(), vocab_size=600, hidden_size=64, num_layers=2, num_heads=2,
                        num_kv_heads=1, intermediate_size=128, vision_depth=1, vision_hidden_size=32, seed=0)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread is ~20x faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
