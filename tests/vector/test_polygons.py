"""Polygons on pixel edges: a label map polygonised and rasterised back at pixel centres is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from vimscope.vector.polygons import MAX_REGION_SIMPLIFY, instance_polygons, label_polygons, rasterize


def random_label_map(seed: int, shape=(48, 64)) -> np.ndarray:
    """Blobs of several values (touching), rings with holes, single pixels and diagonal-only contacts."""
    rng = np.random.default_rng(seed)
    h, w = shape
    coarse = rng.integers(0, 4, (h // 8 + 1, w // 8 + 1))
    labels = np.kron(coarse, np.ones((8, 8), np.int64))[:h, :w]
    labels[rng.random(shape) < 0.05] = rng.integers(0, 9, int((rng.random(shape) < 0.05).sum()) or 1)[0]
    for _ in range(3):  # rings: value 5 around a hole of 0 (or of 6 with a 1-pixel island inside)
        y, x = rng.integers(4, h - 8), rng.integers(4, w - 8)
        labels[y : y + 7, x : x + 7] = 5
        labels[y + 2 : y + 5, x + 2 : x + 5] = rng.choice([0, 6])
        labels[y + 3, x + 3] = 7
    for _ in range(20):  # isolated single pixels
        labels[rng.integers(0, h), rng.integers(0, w)] = rng.integers(1, 9)
    labels[0:2, 0:2] = [[8, 0], [0, 8]]  # same value touching only at a corner
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_through_pixel_centres_is_exact(seed):
    labels = random_label_map(seed)
    polys = list(label_polygons(labels, background=None))
    assert all(p.is_valid for _, p in polys)
    back = rasterize([p for _, p in polys], [v + 1 for v, _ in polys], labels.shape) - 1
    np.testing.assert_array_equal(back, labels)
    # every vertex is a pixel corner and every region's area is its pixel count
    coords = shapely.get_coordinates([p for _, p in polys])
    np.testing.assert_array_equal(coords, np.round(coords))
    assert sum(p.area for _, p in polys) == labels.size


def test_holes_touching_objects_and_single_pixels():
    labels = np.zeros((7, 9), np.int32)
    labels[1:6, 1:6] = 1
    labels[3, 3] = 2  # a one-pixel object in a hole of object 1
    labels[1:6, 6:8] = 3  # touches object 1 along an edge
    labels[0, 8] = 4  # one pixel in a corner of the image
    got = {v: p for v, p in label_polygons(labels)}
    assert set(got) == {1, 2, 3, 4}
    assert len(got[1].interiors) == 1 and got[1].area == 24
    assert got[2].equals(shapely.box(3, 3, 4, 4))
    assert got[4].equals(shapely.box(8, 0, 9, 1))
    assert got[1].intersection(got[3]).length == 5  # the shared edge, not an overlap
    assert got[1].intersection(got[3]).area == 0


def test_offset_scale_and_transform():
    labels = np.zeros((4, 4), np.uint8)
    labels[1, 2] = 1
    ((_, poly),) = label_polygons(labels, offset=(1000, 2000), scale=4.0)
    assert poly.equals(shapely.box(1008, 2004, 1012, 2008))
    ((_, geo),) = label_polygons(labels, transform=(500000.0, 0.5, 0.0, 4000000.0, 0.0, -0.5))
    assert geo.equals(shapely.box(500001.0, 3999999.0, 500001.5, 3999999.5))


def test_region_simplification_stays_within_half_a_pixel():
    from skimage.draw import disk

    labels = np.zeros((80, 80), np.uint8)
    rr, cc = disk((40, 40), 30)
    labels[rr, cc] = 1
    ((_, exact),) = label_polygons(labels)
    ((_, simple),) = label_polygons(labels, simplify=MAX_REGION_SIMPLIFY)
    assert len(shapely.get_coordinates(simple)) < 0.8 * len(shapely.get_coordinates(exact))
    assert shapely.hausdorff_distance(exact, simple) <= MAX_REGION_SIMPLIFY + 1e-9
    # a region outline simplified within 0.5 px never moves a pixel centre across it by more than that
    changed = rasterize([simple], [1], labels.shape) != labels
    assert changed.mean() < 0.01


def test_instance_polygons_group_corner_touching_parts():
    labels = np.zeros((5, 5), np.uint16)
    labels[1, 1] = labels[2, 2] = 7  # one instance whose pixels touch only at a corner
    labels[3:5, 3:5] = 9
    got = dict(instance_polygons(labels, offset=(10, 10)))
    assert got[7].geom_type == "MultiPolygon" and got[7].area == 2
    assert got[9].equals(shapely.box(13, 13, 15, 15))


def test_empty_and_uniform_maps():
    assert list(label_polygons(np.zeros((5, 6), np.uint8))) == []
    ((value, poly),) = list(label_polygons(np.full((5, 6), 3, np.uint8)))
    assert value == 3 and poly.equals(shapely.box(0, 0, 6, 5))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, bool])
def test_extreme_values_of_every_dtype(dtype):
    top = np.iinfo(dtype).max if dtype is not bool else True
    labels = np.zeros((4, 5), dtype)
    labels[1:3, 1:4] = top
    ((value, poly),) = list(label_polygons(labels))
    assert value == top and poly.equals(shapely.box(1, 1, 4, 3))
