"""Shared fixtures: the repository, the real public data slices (tests skip when absent), a tiny Qwen2.5-VL, and
the embedded default run once through Snakemake for the end-to-end modules."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mmgenrec.data.synthetic import vocabulary_corpus
from mmgenrec.models.tiny import build_tiny_qwen25vl
from smkrun import smk

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


@dataclass(frozen=True)
class DemoRun:
    """The embedded default run once for the whole session (the end-to-end modules share it; about 15 minutes on
    2 cores). Tests read it; a test that changes files works on :meth:`copy`."""

    workdir: Path
    config: Path
    after_one: dict[Path, int]  # every file under results/ and its mtime_ns after the first, one-category run
    other_raw_existed: bool  # whether demo_games' raw files existed after the one-category run

    def copy(self, dest: Path) -> Path:
        """The finished workdir copied (file times kept, so Snakemake sees it finished too) to ``dest``."""
        shutil.copytree(self.workdir, dest, symlinks=True)
        return dest


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> DemoRun:
    """``config/demo.yaml`` through the real Snakefile: first one category by naming its target file, then
    everything (``rule all``)."""
    workdir = tmp_path_factory.mktemp("demo")
    config = REPO / "config" / "demo.yaml"
    smk(workdir, "results/demo_music/ours/seqrec_metrics.json", config=config)
    after_one = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    other_raw_existed = (workdir / "resources" / "raw" / "demo_games").exists()
    time.sleep(1)  # a recomputed file would get a later mtime than any recorded one
    smk(workdir, config=config)
    return DemoRun(workdir, config, after_one, other_raw_existed)
