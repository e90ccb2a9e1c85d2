"""Fixtures of the io tests: the demo slide and the images the tests write (generated once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import IN_CI
from tests.io import synthetic


def demo_path():
    """The demo slide the set-up fetched (CMU-1-Small-Region.svs): fails in CI when missing, skips elsewhere."""
    from vimscope.demo import demo_slide_path

    path = demo_slide_path()
    if path is None:
        msg = "demo slide missing: run .ci/setup"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def demo():
    return demo_path()


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic (h, w, 3) uint8 image with structure at several scales (so levels can be compared)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 53.0),
            128 + 90 * np.cos((xx + yy) / 71.0),
            128 + 60 * np.sin(yy / 23.0),
        ],
        axis=-1,
    )
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def big_tiff(request):
    """The 50k x 50k pyramidal TIFF of the done-when figures, kept in the pytest cache (written once)."""
    folder = request.config.cache.mkdir("vimscope-io")
    path = folder / "big50k-v2.tif"
    if not path.exists():
        synthetic.big_pyramid(path, size=50_000)
    return path


@pytest.fixture(scope="session")
def generic_pyramid(tmp_path_factory):
    """A 6000 px generic pyramidal TIFF with JPEG tiles (what tifffile reads; OpenSlide's generic-tiff too)."""
    return synthetic.big_pyramid(tmp_path_factory.mktemp("pyr") / "pyramid.tif", size=6000)


@pytest.fixture(scope="session")
def ome_tiff(tmp_path_factory):
    path = tmp_path_factory.mktemp("ome") / "written.ome.tif"
    return synthetic.ome_pyramid(path, smooth_image(700, 900), levels=3, mpp=0.5)


@pytest.fixture(scope="session")
def ome_zarr_04(tmp_path_factory):
    image = smooth_image(300, 400, seed=1).transpose(2, 0, 1).astype(np.uint16) * 3
    return synthetic.ome_zarr(tmp_path_factory.mktemp("z4") / "written.ome.zarr", image, version="0.4")


@pytest.fixture(scope="session")
def ome_zarr_05(tmp_path_factory):
    image = smooth_image(300, 400, seed=2).transpose(2, 0, 1).astype(np.uint16) * 3
    return synthetic.ome_zarr(tmp_path_factory.mktemp("z5") / "written.ome.zarr", image, version="0.5")


@pytest.fixture(scope="session")
def jpeg_file(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("jpg") / "photo.jpg"
    Image.fromarray(smooth_image(1200, 1500, seed=3)).save(path, quality=90)
    return path
