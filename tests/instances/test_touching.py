"""Touching buildings split at their shared wall; single ones, and whole footprints, left as they are."""

from __future__ import annotations

import numpy as np
import shapely

from vimscope.instances.touching import SplitParams, split_touching
from vimscope.pipeline.footprints import split_region


def _two_houses() -> np.ndarray:
    mask = np.zeros((40, 70), bool)
    mask[5:35, 5:33] = True  # two 30 x 28 houses wall to wall...
    mask[5:35, 33:63] = True
    mask[5:12, 31:35] = False  # ...with a notch at the shared wall, as roofs of two heights leave it
    mask[28:35, 31:35] = False
    return mask


def test_touching_houses_split_single_ones_stay_whole():
    labels = split_touching(_two_houses(), h=2, min_distance=4, min_area=50)
    assert labels.max() == 2
    left, right = labels[20, 15], labels[20, 50]
    assert left and right and left != right
    assert (labels > 0).sum() == _two_houses().sum()  # nothing lost at the split
    one = np.zeros((30, 30), bool)
    one[5:25, 5:25] = True
    assert np.array_equal(split_touching(one, 2, 4, 50), one.astype(np.int32))


def test_small_pieces_are_dropped_and_peakless_regions_kept():
    mask = np.zeros((30, 60), bool)
    mask[2:5, 2:5] = True  # 9 px: below min_area
    mask[10:13, 10:40] = True  # a 3-px strip: no peak reaches min_distance, kept whole
    labels = split_touching(mask, h=2, min_distance=4, min_area=20)
    assert labels[3, 3] == 0 and labels[11, 20] > 0 and len(np.unique(labels)) == 2
    assert not split_touching(np.zeros((5, 5), bool), 2, 4, 1).any()


def test_params_are_in_metres():
    p = SplitParams.from_dict({"h": 0.3, "min_distance": 0.6, "min_area": 9.0})
    assert p.in_pixels(0.15) == (2.0, 4.0, 400.0)
    assert SplitParams.from_dict({}) is None and SplitParams.from_dict(None) is None


def test_split_region_traces_the_pieces_back_at_level_zero():
    from vimscope.vector.outlines import trace_regions

    polys, _ = trace_regions(_two_houses().astype(np.uint8), background=0)
    region = shapely.transform(polys[0], lambda xy: xy * 2.0)  # level 0 at twice the output pixel size
    pieces = split_region(region, 2.0, (2, 4, 50))
    assert len(pieces) == 2
    assert abs(sum(p.area for p in pieces) - region.area) < 1e-6
    assert shapely.union_all(pieces).equals(region)
    square = shapely.box(0, 0, 40, 40)
    assert split_region(square, 2.0, (2, 4, 50)) == [square]
