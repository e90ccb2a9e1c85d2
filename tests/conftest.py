"""Shared fixtures: the real files in ../shared (fail in CI when missing, skip elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; VIMSCOPE_SHARED points elsewhere (the GPU machine gets a carried copy)
SHARED = Path(os.environ.get("VIMSCOPE_SHARED", ROOT.parent / "shared")).resolve()
DATA = SHARED / "data"
PARITY = SHARED / "parity"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_path(relative: str) -> Path:
    """A file under ../shared; a missing one fails in CI (CI=true) and skips elsewhere."""
    path = SHARED / relative
    if not path.exists():
        msg = f"shared test data missing: {path}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def shared():
    return shared_path


def pytest_collection_modifyitems(config, items):
    """GPU tests need CUDA; asking for them (-m gpu) without one is an error, not a silent skip."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device (run with -m gpu on the GPU machine)"))
