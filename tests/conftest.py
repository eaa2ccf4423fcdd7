"""Shared fixtures: paths to the repository and to the real public data slices (tests skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMGENREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """The folder of real public slices (``../shared/data``); the test is skipped where it is not present."""
    if not SHARED.is_dir():
        pytest.skip(f"real data slices not found at {SHARED} (set MMGENREC_SHARED_DATA)")
    return SHARED
