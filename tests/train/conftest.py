"""Training tests run tiny models whose ops are too small to share between threads, so this folder runs with one
torch thread (restored afterwards).

The CPU scan (``vimscope_kernels.bimamba.cpu``) runs numba ``parallel`` loops; with numba's OpenMP
threading layer its idle threads spin after every call and the next torch ops run ~10x slower (measured: a
training step 0.06 s before a no-grad forward, 0.8 s after). The training loop validates under no-grad between
epochs, so these tests ask for numba's workqueue layer when no parallel region has run yet in this process.
"""

from __future__ import annotations

import pytest


def _prefer_workqueue() -> None:
    try:
        import numba
    except ImportError:
        return
    try:
        numba.threading_layer()  # raises ValueError while no layer has been launched
    except ValueError:
        numba.config.THREADING_LAYER = "workqueue"


_prefer_workqueue()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sentinel2_entry() -> dict:
    """The Sentinel-2 land-cover tile (10 bands, uint16, mask value 0 = unlabelled) as a ``raster_mask`` source."""
    from tests.conftest import shared_path

    folder = shared_path("data/labelled/landcover-sentinel2")
    names = ["unlabelled", "conifer", "mixed", "urban", "crops", "bare", "grass", "roads", "water", "veg", "quarry"]
    return {
        "kind": "raster_mask",
        "image": str(folder / "strzegom_20230301_33u.tif"),
        "mask": str(folder / "strzegom_20230301_33u_mask.tif"),
        "classes": names,
    }
