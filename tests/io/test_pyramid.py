"""Computed overview levels: exact block means, bounded memory (strips, never all of level 0), cached once."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import vimscope.io.pyramid as pyramid
from tests.io.conftest import smooth_image
from vimscope.io import open_slide
from vimscope.io.pyramid import block_mean, computed_level_sizes
from vimscope.types import Box


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int8, np.float32, np.bool_])
@pytest.mark.parametrize("f", [2, 3, 8])
def test_block_mean_matches_the_definition(dtype, f):
    rng = np.random.default_rng(f)
    data = (rng.integers(0, 200, (37, 51, 2)) - (60 if dtype == np.int8 else 0)).astype(dtype)
    out = block_mean(data, f)
    oh, ow = -(-37 // f), -(-51 // f)
    assert out.shape == (oh, ow, 2) and out.dtype == data.dtype
    for y in range(oh):
        for x in range(ow):
            ref = data[y * f : (y + 1) * f, x * f : (x + 1) * f].reshape(-1, 2).astype(np.float64).mean(0)
            if dtype == np.bool_:
                np.testing.assert_array_equal(out[y, x], ref >= 0.5)
            else:
                np.testing.assert_allclose(out[y, x], ref, atol=0.5 if data.dtype.kind != "f" else 1e-5)


def test_level_sizes_halve_until_the_overview_fits():
    assert computed_level_sizes(1000, 800) == []
    assert computed_level_sizes(5000, 3001) == [(2500, 1501, 2), (1250, 751, 4), (625, 376, 8)]


@pytest.fixture(scope="module")
def plain_tiff(tmp_path_factory):
    """A 2600 x 2100 TIFF in strips of 64 rows, no pyramid."""
    image = smooth_image(2100, 2600, seed=9)
    path = tmp_path_factory.mktemp("plain") / "plain.tif"
    tifffile.imwrite(path, image, rowsperstrip=64, photometric="rgb")
    return path, image


def test_overviews_read_level_0_in_bounded_strips_once(plain_tiff, monkeypatch):
    path, image = plain_tiff
    monkeypatch.setattr(pyramid, "STRIP_PIXELS", 1 << 19)
    reader = open_slide(path)
    assert reader.meta.native_levels == 1 and reader.meta.computed_levels == 2
    calls = []
    read_level = reader._read_level

    def spy(handle, box, level, bands):
        calls.append(box)
        return read_level(handle, box, level, bands)

    monkeypatch.setattr(reader, "_read_level", spy)
    last = reader.meta.level_count - 1
    w, h = reader.meta.level_dimensions[last]
    thumb = reader.read(Box(0, 0, w, h), last)
    assert max(b.w * b.h for b in calls) <= (1 << 19) + 2600 * 2  # strips, never the whole of level 0
    assert sum(b.w * b.h for b in calls) == 2600 * 2100  # every pixel read once for all cached levels
    np.testing.assert_array_equal(thumb, block_mean(block_mean(image, 2), 2))  # level 2 is made from level 1
    assert np.abs(thumb.astype(int) - block_mean(image, 4)).max() <= 1
    calls.clear()
    reader.read(Box(0, 0, w, h), last)
    reader.read(Box(10, 10, 20, 20), last - 1)
    assert calls == []  # cached


def test_large_computed_levels_are_read_on_demand(plain_tiff, monkeypatch):
    path, image = plain_tiff
    monkeypatch.setattr(pyramid, "CACHE_BYTES", 1 << 10)  # nothing is small enough to keep
    reader = open_slide(path)
    box = Box(100, 200, 300, 250)
    np.testing.assert_array_equal(reader.read(box, 1), block_mean(image[400:900, 200:800], 2))
    np.testing.assert_array_equal(reader.read(Box(0, 0, 10, 10), 2), block_mean(image[:40, :40], 4))
