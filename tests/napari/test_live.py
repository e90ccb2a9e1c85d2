"""The live labels pyramid: coarse levels filled in from written blocks equal a stride of the class map."""

from __future__ import annotations

import numpy as np
import zarr
from vimscope_napari._live import LiveLabels

from vimscope.types import Box


def test_levels_follow_the_blocks_written(tmp_path):
    h, w = 2600, 3100
    array = zarr.create_array(str(tmp_path / "classes"), shape=(h, w), chunks=(512, 512), dtype="uint8", fill_value=0)
    live = LiveLabels(array, in_memory_side=800)
    kinds = [type(level).__name__ for level in live.levels]
    # as many levels as the writer's finished pyramid (coarsest fits a chunk); big ones strided, small in memory
    assert [tuple(level.shape) for level in live.levels] == [(2600, 3100), (1300, 1550), (650, 775), (325, 388)]
    assert kinds[1] == "_Strided" and kinds[2] == kinds[3] == "ndarray"

    truth = np.random.default_rng(0).integers(0, 5, (h, w), dtype=np.uint8)
    for box in [
        Box(0, 0, 1024, 512),
        Box(1024, 0, 2076, 512),
        Box(0, 512, 3100, 1536),
        Box(7, 2048, 3093, 552),
        Box(0, 2049, 7, 551),
        Box(0, 2048, 7, 1),
    ]:
        array[box.y : box.y1, box.x : box.x1] = truth[box.y : box.y1, box.x : box.x1]
        live.update(box, live.read_block(box))
    for level, data in enumerate(live.levels):
        f = 2**level
        np.testing.assert_array_equal(np.asarray(data[:, :]), truth[::f, ::f], err_msg=f"level {level}")
    # napari reads tiles of a level by slices (and single rows by integers)
    np.testing.assert_array_equal(live.levels[1][100:300, 700:900], truth[200:600:2, 1400:1800:2])
    np.testing.assert_array_equal(live.levels[1][5], truth[10, ::2])


def test_unwritten_blocks_stay_background(tmp_path):
    array = zarr.create_array(str(tmp_path / "c"), shape=(1200, 1200), chunks=(512, 512), dtype="uint8", fill_value=0)
    live = LiveLabels(array)
    array[0:512, 0:512] = 3
    live.update(Box(0, 0, 512, 512), live.read_block(Box(0, 0, 512, 512)))
    coarse = live.levels[-1]
    f = 2 ** (len(live.levels) - 1)
    assert (coarse[: 512 // f, : 512 // f] == 3).all() and (coarse[512 // f + 1 :, :] == 0).all()
