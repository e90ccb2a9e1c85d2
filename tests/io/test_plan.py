"""TilePlan: resolution -> read level + resample factor, tiles touching mask/region only, stripe-major order."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vimscope.errors import ConfigError, MissingPixelSizeError, RegionError
from vimscope.io.meta import SlideMeta
from vimscope.tiling.plan import TilePlan, plan_tiles
from vimscope.tissue import TissueMask
from vimscope.types import Box


def _meta(w=10_000, h=7_000, mpp=0.25, downsamples=(1.0, 4.0, 16.0)):
    return SlideMeta(
        path="synthetic",
        backend="test",
        level_dimensions=[(int(np.ceil(w / d)), int(np.ceil(h / d))) for d in downsamples],
        level_downsamples=list(downsamples),
        mpp=mpp,
    )


@pytest.mark.parametrize(
    "target, level, level_scale, scale",
    [(None, 0, 1.0, 1.0), (0.25, 0, 1.0, 1.0), (0.5, 0, 2.0, 2.0), (1.0, 1, 1.0, 4.0), (2.0, 1, 2.0, 8.0)],
)
def test_resolution_picks_the_level_and_resample_factor(target, level, level_scale, scale):
    plan = plan_tiles(_meta(), target_mpp=target, tile=512, halo=32)
    assert (plan.read_level, plan.level_scale, plan.scale) == (level, level_scale, scale)
    assert plan.out_shape == (int(np.ceil(7000 / scale)), int(np.ceil(10_000 / scale)))


def test_cores_tile_the_output_exactly_and_read_boxes_add_the_halo():
    plan = plan_tiles(_meta(), target_mpp=0.5, tile=512, halo=32)
    h, w = plan.out_shape
    cover = np.zeros((h, w), np.int32)
    for t in plan.tiles:
        b = t.box
        cover[b.y : b.y1, b.x : b.x1] += 1
        assert t.read_box == Box(t.col * plan.core - 32, t.row * plan.core - 32, 512, 512)
        assert b.x == t.col * plan.core and b.y == t.row * plan.core
    assert (cover == 1).all()
    assert plan.core == 448 and len(plan.tiles) == plan.grid_shape[0] * plan.grid_shape[1]


def test_stripe_major_then_band_then_row_major_order():
    plan = plan_tiles(_meta(), target_mpp=None, tile=1024, halo=0, stripe_width=3000, band_height=2048)
    assert [t.index for t in plan.tiles] == list(range(len(plan.tiles)))
    keys = [(t.stripe, t.band, t.row, t.col) for t in plan.tiles]
    assert keys == sorted(keys)
    for band in plan.bands:
        assert all(plan.tiles[i].band == band.index and plan.tiles[i].stripe == band.stripe for i in band.tiles)
        rows = {plan.tiles[i].row for i in band.tiles}
        assert len(rows) <= 2 and band.box.h <= 2048
        cols = {plan.tiles[i].col for i in band.tiles}
        assert len(cols) <= 2 and band.box.w <= 3000  # stripes are at most stripe_width wide
    assert plan.stripes == int(np.ceil(10 / 2))
    assert sum(len(b.tiles) for b in plan.bands) == len(plan.tiles)


def test_only_tiles_touching_the_mask():
    meta = _meta()
    m = np.zeros((int(np.ceil(7000 / 32)), int(np.ceil(10_000 / 32))), bool)
    m[50:52, 100] = True  # level-0 rows 1600-1664, column 3200-3232
    m[200, 5] = True
    mask = TissueMask(m, 32.0, "test")
    plan = plan_tiles(meta, target_mpp=0.5, tile=256, halo=16, mask=mask)
    full = plan_tiles(meta, target_mpp=0.5, tile=256, halo=16)
    expected = [t for t in full.tiles if mask.any_in(plan.level0_box(t.box))]
    assert [(t.row, t.col) for t in plan.tiles] == [(t.row, t.col) for t in expected]
    assert 2 <= len(plan.tiles) <= 6
    assert len(plan.bands) == len(full.bands)  # every band exists, empty ones hold no tiles


def test_only_tiles_touching_the_region():
    import shapely

    meta = _meta()
    region = [Box(1000, 1000, 500, 300), Box(9000, 6000, 1000, 1000)]
    plan = plan_tiles(meta, target_mpp=None, tile=512, halo=0, region=region)
    for t in plan_tiles(meta, target_mpp=None, tile=512, halo=0).tiles:
        touches = any(t.box.intersect(r) for r in region)
        assert touches == any((s.row, s.col) == (t.row, t.col) for s in plan.tiles)
    poly = shapely.Polygon([(0, 0), (4000, 0), (0, 4000)])
    tri = plan_tiles(meta, target_mpp=None, tile=512, halo=0, region=poly)
    assert all(t.row + t.col <= 7 for t in tri.tiles) and len(tri.tiles) == 36
    with pytest.raises(RegionError):
        plan_tiles(meta, target_mpp=None, tile=512, halo=0, region=[Box(20_000, 0, 10, 10)])
    with pytest.raises(RegionError):
        plan_tiles(meta, target_mpp=None, tile=512, halo=0, region=shapely.box(-50, -50, -10, -10))


def test_json_round_trip_and_determinism():
    m = np.random.default_rng(0).random((219, 313)) > 0.7
    mask = TissueMask(m, 32.0, "test")
    a = plan_tiles(_meta(), target_mpp=1.0, tile=256, halo=8, mask=mask, stripe_width=2000, band_height=512)
    b = plan_tiles(_meta(), target_mpp=1.0, tile=256, halo=8, mask=mask, stripe_width=2000, band_height=512)
    assert a == b and a.to_json() == b.to_json()
    back = TilePlan.from_json(a.to_json())
    assert back == a and back.tiles[3].read_box == a.tiles[3].read_box


def test_bad_arguments():
    with pytest.raises(MissingPixelSizeError, match="--mpp"):
        plan_tiles(_meta(mpp=None), target_mpp=0.5, tile=512, halo=0)
    assert plan_tiles(_meta(mpp=None), target_mpp=None, tile=512, halo=0).tiles
    for tile, halo in ((64, 32), (0, 0), (128, -1)):
        with pytest.raises(ConfigError):
            plan_tiles(_meta(), target_mpp=None, tile=tile, halo=halo)


def test_a_gigapixel_plan_is_fast():
    meta = _meta(w=150_000, h=100_000, downsamples=(1, 4, 16, 64))
    m = np.zeros((100_000 // 32, 150_000 // 32), bool)
    m[500:2500, 1000:4000] = True
    start = time.perf_counter()
    plan = plan_tiles(meta, target_mpp=0.5, tile=1024, halo=64, mask=TissueMask(m, 32.0, "test"))
    assert time.perf_counter() - start < 2.0
    assert 0 < len(plan.tiles) < plan.grid_shape[0] * plan.grid_shape[1]
    assert max(b.box.w for b in plan.bands) <= 16384
