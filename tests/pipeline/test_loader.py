"""The tile loader: resampling that does not depend on the tile, padding, a bounded pool, damaged tiles."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from vimscope.errors import DamagedTileError
from vimscope.tiling.loader import TileGeometry, TileLoader, batches_in_order, pad_window, read_resampled, read_window
from vimscope.types import Box


class ArrayReader:
    """A slide held in memory, with the SlideReader calls the loader uses; counts what happens to it."""

    def __init__(self, levels: list[np.ndarray], damaged: list[Box] = (), delay: float = 0.0, stats=None):
        self.levels = levels
        self.damaged = list(damaged)
        self.delay = delay
        self.stats = stats if stats is not None else {"active": 0, "peak": 0, "handles": 0, "lock": threading.Lock()}
        self.meta = SimpleNamespace(level_dimensions=[(a.shape[1], a.shape[0]) for a in levels], path="mem")

    def __reduce__(self):  # "reopen by path": a new handle sharing the statistics
        return (_new_handle, (self.levels, self.damaged, self.delay, id(self.stats)))

    def read_rgb(self, box: Box, level: int = 0):
        a = self.levels[level]
        assert 0 <= box.x and 0 <= box.y and box.x1 <= a.shape[1] and box.y1 <= a.shape[0], box
        if level == 0 and any(box.intersect(d) for d in self.damaged):
            raise DamagedTileError("corrupt JPEG data", box=box)
        with self.stats["lock"]:
            self.stats["active"] += 1
            self.stats["peak"] = max(self.stats["peak"], self.stats["active"])
        time.sleep(self.delay)
        with self.stats["lock"]:
            self.stats["active"] -= 1
        return a[box.y : box.y1, box.x : box.x1].copy()

    def close(self):
        pass


_STATS: dict[int, dict] = {}


def _new_handle(levels, damaged, delay, stats_id):
    stats = _STATS[stats_id]
    with stats["lock"]:
        stats["handles"] += 1
    return ArrayReader(levels, damaged, delay, stats)


def make_reader(img, **kw):
    r = ArrayReader([img], **kw)
    _STATS[id(r.stats)] = r.stats
    return r


@pytest.mark.parametrize("scale", [1.0, 2.0, 1.5, 2.37])
def test_resampling_does_not_depend_on_the_tile(scale):
    """A pixel read as part of any box equals the same pixel of a whole-image read (integer area filter)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (203, 187, 3), dtype=np.uint8)
    reader = make_reader(img)
    out_h, out_w = int(np.ceil(203 / scale)), int(np.ceil(187 / scale))
    whole = read_resampled(reader, 0, scale, Box(0, 0, out_w, out_h), (187, 203))
    assert whole.shape == (out_h, out_w, 3) and whole.dtype == np.uint8
    for box in (Box(3, 5, 17, 23), Box(out_w - 9, out_h - 11, 9, 11), Box(0, 0, 1, 1)):
        part = read_resampled(reader, 0, scale, box, (187, 203))
        assert np.array_equal(part, whole[box.y : box.y1, box.x : box.x1]), box
    if scale == 2.0:  # an integer factor is the plain block mean, rounded half up
        ref = (img[:202, :186].reshape(101, 2, 93, 2, 3).astype(int).sum(axis=(1, 3)) + 2) // 4
        assert np.array_equal(whole[:101, :93], ref)
    if scale != 1.0:  # a flat image stays flat
        flat = make_reader(np.full((203, 187, 3), 77, np.uint8))
        assert (read_resampled(flat, 0, scale, Box(0, 0, out_w, out_h), (187, 203)) == 77).all()


def test_padding_reflects_or_fills():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    r = pad_window(a, (1, 2), (6, 8), "reflect")
    assert r.shape == (6, 8, 1)
    assert np.array_equal(r[1:4, 2:6], a)
    assert r[0, 2, 0] == a[1, 0, 0] and r[1, 1, 0] == a[0, 1, 0]  # mirrored without repeating the edge
    c = pad_window(a, (1, 2), (6, 8), "constant", value=255)
    assert (c[0] == 255).all() and (c[:, :2] == 255).all() and np.array_equal(c[1:4, 2:6], a)


def _plan(out_shape, tile, halo):
    h, w = out_shape
    core = tile - 2 * halo
    tiles = []
    for y in range(0, h, core):
        for x in range(0, w, core):
            c = Box(x, y, min(core, w - x), min(core, h - y))
            tiles.append(SimpleNamespace(box=c, read_box=Box(x - halo, y - halo, c.w + 2 * halo, c.h + 2 * halo)))
    return SimpleNamespace(
        read_level=0, level_scale=1.0, scale=1.0, out_shape=out_shape, tile=tile, halo=halo, tiles=tiles
    )


def test_windows_are_full_tiles_padded_at_the_border():
    img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    reader = make_reader(img)
    plan = _plan((50, 70), 32, 8)
    geom = TileGeometry.from_plan(plan, reader.meta)
    last = plan.tiles[-1]
    win = geom.window(last.read_box)
    a = read_window(reader, geom, win, pad="constant", value=9)
    assert a.shape == (32, 32, 3)
    inner = win.intersect(Box(0, 0, 70, 50))
    assert np.array_equal(a[: inner.h, : inner.w], img[inner.y :, inner.x :])
    assert (a[inner.h :] == 9).all() and (a[:, inner.w :] == 9).all()


def test_pool_is_bounded_uses_one_handle_per_thread_and_flags_damaged_tiles():
    img = np.random.default_rng(2).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    bad = Box(70, 70, 2, 2)
    reader = make_reader(img, damaged=[bad], delay=0.002)
    plan = _plan((160, 160), 48, 8)
    batches = batches_in_order(range(len(plan.tiles)), 3)
    loader = TileLoader(
        reader, plan, batches, workers=3, prefetch=2, pad="reflect", damaged_value=255, pin_memory=False
    )
    submitted, seen = [], []
    orig = loader._submit_batch
    loader._submit_batch = lambda pool, b: (submitted.append(len(seen)), orig(pool, b))[1]
    for batch in loader:
        seen.append(batch.tiles)
        # never more than `prefetch` batches submitted beyond the ones handed out
        assert len(submitted) <= len(seen) + 2
        assert batch.pixels.shape == (len(batch.tiles), 48, 48, 3)
        for i, t in enumerate(batch.tiles):
            win = loader.geom.window(plan.tiles[t].read_box)
            if t in batch.damaged:
                assert win.intersect(bad) is not None and (batch.pixels[i].numpy() == 255).all()
            else:
                assert win.intersect(bad) is None
                inner = win.intersect(Box(0, 0, 160, 160))
                got = batch.pixels[i].numpy()[inner.y - win.y : inner.y1 - win.y, inner.x - win.x : inner.x1 - win.x]
                assert np.array_equal(got, img[inner.y : inner.y1, inner.x : inner.x1])
    assert [t for b in seen for t in b] == list(range(len(plan.tiles)))
    assert sum(len(b) for b in seen) == len(plan.tiles)
    n_damaged = sum(1 for t in plan.tiles if Box(t.read_box.x, t.read_box.y, 48, 48).intersect(bad))
    assert n_damaged >= 1
    # one handle per thread, plus a fresh one after each damaged read (an OpenSlide handle dies on errors)
    assert reader.stats["handles"] <= 3 + n_damaged
    assert reader.stats["peak"] <= 3
