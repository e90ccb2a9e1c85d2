"""The array outline tracer (``vector.outlines``) against GEOS's polygonizer (``polygons.faces_reference``)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from tests.vector.test_polygons import random_label_map
from vimscope.vector.outlines import trace_regions
from vimscope.vector.polygons import faces_reference, group_parts, label_faces
from vimscope.writers.pyramid import downsample_mode, downsample_mode_reference


def assert_same_faces(labels: np.ndarray, background=0) -> int:
    """Every traced region is one of the reference's, vertex for vertex (start, direction and hole order too:
    a later simplification depends on them), and no region is missing or extra."""
    got, values = trace_regions(labels, background)
    faces, ref_values = faces_reference(labels)
    ref = {}
    for face, value in zip(faces, ref_values.tolist()):
        if background is None or value != background:
            ref.setdefault(shapely.normalize(face).wkb, []).append((value, face.wkt))
    assert len(got) == sum(len(v) for v in ref.values())
    for poly, value in zip(got, values.tolist()):
        assert poly.is_valid, shapely.is_valid_reason(poly)
        candidates = ref.get(shapely.normalize(poly).wkb)
        assert candidates, f"no reference region equals {poly.wkt}"
        assert (value, poly.wkt) in candidates
    return len(got)


@pytest.mark.parametrize("seed", range(4))
def test_random_maps_give_the_reference_polygons(seed):
    labels = random_label_map(seed)  # touching blobs, rings with holes, single pixels, corner contacts
    assert_same_faces(labels)  # few values: exact components per value
    assert_same_faces(labels, background=None)
    assert_same_faces((labels * 1000).astype(np.uint32))  # many values: one component per value, checked


def test_values_in_several_pieces_and_corner_pinches():
    rng = np.random.default_rng(7)
    for _ in range(30):
        small = rng.integers(0, rng.integers(2, 5), (rng.integers(1, 12), rng.integers(1, 12)))
        assert_same_faces(small * 100)  # one value in pieces that touch at corners or not at all, holes
        blocky = np.kron(rng.integers(0, 3, (8, 9)), np.ones((2, 2), np.int64))
        blocky[rng.random(blocky.shape) < 0.1] = 0
        ids = (np.arange(blocky.size).reshape(blocky.shape) // 7 % 97) * (blocky > 0)
        assert_same_faces(ids)


def test_a_ring_that_touches_itself_is_one_valid_polygon():
    labels = np.zeros((6, 6), np.uint32)
    labels[1:5, 1:5] = 900
    labels[2:4, 2:4] = 0
    labels[2, 2] = 900  # the hole touches the ring's inner corner only diagonally...
    labels[1, 4] = 0  # ...and the ring has a notch touching the outside at a corner
    assert assert_same_faces(labels) == 1


def test_empty_uniform_and_tiny_maps():
    assert len(trace_regions(np.zeros((3, 4), np.uint8), 0)[0]) == 0
    assert len(trace_regions(np.zeros((0, 4), np.uint8), 0)[0]) == 0
    (poly,), (value,) = trace_regions(np.full((3, 4), 7, np.int32))
    assert value == 7 and poly.equals(shapely.box(0, 0, 4, 3))
    (poly,), _ = trace_regions(np.ones((1, 1), bool), 0)
    assert poly.equals(shapely.box(0, 0, 1, 1))


def test_parts_are_grouped_by_value():
    labels = np.zeros((5, 5), np.uint16)
    labels[1, 1] = labels[2, 2] = 7
    labels[3:5, 3:5] = 9
    values, geoms = group_parts(*label_faces(labels))
    assert values == [7, 9]
    assert geoms[0].geom_type == "MultiPolygon" and geoms[1].equals(shapely.box(3, 3, 5, 5))


def test_mode_downsample_equals_counting():
    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        for shape in ((7, 9), (64, 64), (3, 10, 11)):
            a = rng.integers(0, k, shape).astype(np.uint8)
            np.testing.assert_array_equal(downsample_mode(a), downsample_mode_reference(a))
            ids = a.astype(np.uint32) * 1000
            np.testing.assert_array_equal(downsample_mode(ids), downsample_mode_reference(ids))


def _partition_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two labellings split the pixels into the same parts (whatever the ids)?"""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("seed", range(4))
def test_component_fill_equals_scikit_image_label(seed):
    """``_fill`` (the tracer's components, filled from a pixel) against ``skimage.measure.label``."""
    from skimage.measure import label

    from vimscope.vector.outlines import _fill

    rng = np.random.default_rng(seed)
    maps = [random_label_map(seed), rng.integers(0, 3, (37, 53)), (random_label_map(seed + 9) * 1000).astype(np.uint32)]
    for labels in maps:
        comp = np.zeros(labels.shape, np.int32)
        stack = np.empty(labels.size, np.int64)
        n = 0
        for r, c in zip(*np.nonzero(comp == 0)):
            if comp[r, c] == 0:
                n += 1
                _fill(labels, comp, r, c, n, stack)
        assert comp.min() > 0
        assert _partition_equal(comp, label(labels, background=-1, connectivity=1))


@pytest.mark.parametrize("name", ["01", "17", "33"])
def test_real_nuclei_labels_give_the_reference_polygons(name):
    """Hand-labelled nuclei (GBM40, 512 x 512, touching and pinched objects) traced as GEOS polygonizes them."""
    from PIL import Image

    from tests.conftest import shared_path

    path = shared_path(f"data/labelled/nuclei-gbm40/{name}_labels.png")
    labels = np.asarray(Image.open(path))
    assert assert_same_faces(labels) > 20
    assert_same_faces((labels > 0).astype(np.uint8) + (labels % 3 == 1), background=None)  # a class map


def test_compiled_reductions_equal_numpy():
    """The compiled 2x2 mean and mode (``pyramid._mean2``, ``_mode2``) against their numpy statements, odd sizes
    (the border replicated) and leading axes included."""
    from vimscope.writers.pyramid import downsample_mean, downsample_mean_plain, downsample_mode_plain

    rng = np.random.default_rng(1)
    for shape in ((1, 1), (1, 6), (5, 1), (7, 9), (64, 64), (3, 10, 11), (2, 3, 5, 7)):
        for dtype in (np.uint8, np.uint16, np.int32, np.uint32):
            a = rng.integers(0, 5 if np.dtype(dtype).itemsize == 4 else np.iinfo(dtype).max, shape).astype(dtype)
            got = downsample_mode(a)
            assert got.dtype == a.dtype
            np.testing.assert_array_equal(got, downsample_mode_plain(a))
            np.testing.assert_array_equal(got, downsample_mode_reference(a))
            if dtype in (np.uint8, np.uint16):
                mean = downsample_mean(a)
                assert mean.dtype == a.dtype
                np.testing.assert_array_equal(mean, downsample_mean_plain(a))
