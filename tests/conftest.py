"""Shared fixtures: a fresh registry per test, and where the release annotation files are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AQA_SHARED_DATA", REPO.parent / "shared" / "data"))

# The documentation generator is part of the repository, not of the package: docs/docgen/.
if str(REPO / "docs") not in sys.path:
    sys.path.insert(0, str(REPO / "docs"))


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Every test starts and ends without a cached process-wide registry."""
    from aqa_framework.registry import reset_registry

    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def one_intra_op_thread():
    """Tiny models: intra-op threads only add synchronisation (and stall on a busy CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    """The release annotation files (../shared/data); skips when absent."""
    if not (SHARED_DATA / "mtl-aqa").is_dir():
        pytest.skip(f"release annotation files not found at {SHARED_DATA} (set AQA_SHARED_DATA)")
    return SHARED_DATA
