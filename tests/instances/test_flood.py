"""The bucket-queue flood (``vimscope.instances.flood``) against scikit-image's watershed and against a plain
heapq statement of its rule: same labels where scikit-image's order is defined, markers of equal elevation in
raster order where it is not, and an object's labels set by its own foreground blob alone."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from vimscope.instances.flood import flood_uint8

EDGES = [(-1, 0), (0, -1), (0, 1), (1, 0)]
CORNERS = [(-1, -1), (-1, 1), (1, -1), (1, 1)]


def heapq_flood(elevation, markers, mask, connectivity):
    """The rule, spelled out: keys (max(elevation, parent's key), age), markers first in raster order."""
    h, w = elevation.shape
    out = np.where(mask, markers, 0).astype(np.int32)
    heap, age = [], 0
    for index in np.flatnonzero(out):
        heapq.heappush(heap, (int(elevation.flat[index]), age, index))
        age += 1
    steps = EDGES + (CORNERS if connectivity == 2 else [])
    while heap:
        key, _, index = heapq.heappop(heap)
        y, x = divmod(index, w)
        for dy, dx in steps:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not out[yy, xx]:
                out[yy, xx] = out.flat[index]
                heapq.heappush(heap, (max(int(elevation[yy, xx]), key), age, yy * w + xx))
                age += 1
    return out


def random_case(rng, levels: int, distinct_markers: bool):
    h, w = (int(v) for v in rng.integers(5, 50, 2))
    elevation = rng.integers(0, levels, (h, w)).astype(np.uint8)
    mask = rng.random((h, w)) < 0.8
    markers = np.zeros((h, w), np.int32)
    if distinct_markers:  # single pixels of distinct elevations: scikit-image's order among them is defined
        seen: set[int] = set()
        for index in rng.permutation(np.flatnonzero(mask))[:12]:
            if int(elevation.flat[index]) not in seen:
                seen.add(int(elevation.flat[index]))
                markers.flat[index] = len(seen)
    else:  # blobs of equal elevation and touching markers: ties everywhere
        markers = ndi.label(rng.random((h, w)) < 0.15)[0].astype(np.int32)
    return elevation, markers, mask


@pytest.mark.parametrize("connectivity", [1, 2])
def test_equals_scikit_image_where_its_order_is_defined(connectivity):
    rng = np.random.default_rng(connectivity)
    for trial in range(40):
        elevation, markers, mask = random_case(rng, 256 if trial % 2 else 5, distinct_markers=True)
        expected = watershed(elevation, markers, mask=mask, connectivity=connectivity)
        np.testing.assert_array_equal(flood_uint8(elevation, markers, mask, connectivity), expected)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_equals_the_rule_with_ties_everywhere(connectivity):
    rng = np.random.default_rng(10 + connectivity)
    for trial in range(40):
        elevation, markers, mask = random_case(rng, 256 if trial % 2 else 3, distinct_markers=False)
        expected = heapq_flood(elevation, markers, mask, connectivity)
        np.testing.assert_array_equal(flood_uint8(elevation, markers, mask, connectivity), expected)


def test_a_blob_is_flooded_by_its_own_pixels_alone():
    """Two blobs apart: the left one's labels are the same with or without the right one (scikit-image's heap
    layout, and so its order among equal markers, depends on every blob)."""
    rng = np.random.default_rng(5)
    elevation = rng.integers(0, 4, (30, 61)).astype(np.uint8)
    mask = np.zeros((30, 61), bool)
    mask[2:28, 2:29] = mask[2:28, 32:59] = True
    markers = ndi.label((rng.random((30, 61)) < 0.2) & mask)[0].astype(np.int32)
    both = flood_uint8(elevation, markers, mask, 1)
    left_only = flood_uint8(elevation[:, :30], markers[:, :30], mask[:, :30], 1)
    np.testing.assert_array_equal(both[:, :30], left_only)


def test_markers_outside_the_mask_are_dropped_and_bad_input_refused():
    elevation = np.zeros((4, 4), np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    markers = np.zeros((4, 4), np.int32)
    markers[0, 0], markers[3, 3] = 1, 2
    out = flood_uint8(elevation, markers, mask)
    assert (out[:2] == 1).all() and (out[2:] == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        flood_uint8(elevation.astype(np.float32), markers, mask)
    with pytest.raises(ValueError, match="same shape"):
        flood_uint8(elevation, markers[:3], mask)
