"""Sample data: the synthetic slide made locally, and the demo slide from the set-up's cache."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import IN_CI
from vimscope.demo import demo_slide_path
from vimscope.errors import SlideNotFoundError


def test_synthetic_sample_opens_from_the_menu(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("VIMSCOPE_CACHE", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    viewer.open_sample("vimscope", "synthetic")
    (layer,) = viewer.layers
    assert layer.rgb and layer.multiscale and len(layer.data) >= 2
    assert layer.data[0].shape == (1536, 2048, 3)
    np.testing.assert_allclose(layer.scale, [0.5, 0.5])
    assert (tmp_path / "cache" / "vimscope-synthetic-slide.ome.tif").is_file(), "made once, in the cache"
    pixels = np.asarray(layer.data[-1])
    assert pixels.std() > 20, "tissue on glass, not a flat image"


def test_synthetic_slide_is_deterministic(tmp_path):
    from vimscope.synthetic import synthetic_rgb

    a, b = synthetic_rgb(200, 300, seed=3), synthetic_rgb(200, 300, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthetic_rgb(200, 300, seed=4))


def test_demo_sample_without_the_cache_says_how_to_get_it(tmp_path, monkeypatch):
    from vimscope_napari._sample_data import demo_slide

    monkeypatch.setenv("VIMSCOPE_CACHE", str(tmp_path))
    with pytest.raises(SlideNotFoundError, match=r"\.ci/setup"):
        demo_slide()


def test_demo_sample_opens(make_napari_viewer):
    path = demo_slide_path()
    if path is None:
        if IN_CI:
            pytest.fail("the demo slide is missing: .ci/setup fetches it")
        pytest.skip("demo slide not fetched on this machine (bash .ci/setup)")
    viewer = make_napari_viewer()
    viewer.open_sample("vimscope", "demo")
    (layer,) = viewer.layers
    assert layer.rgb and layer.multiscale
    assert layer.data[0].shape[:2] == (2967, 2220)
    np.testing.assert_allclose(layer.scale, [0.499, 0.499], atol=1e-3)
