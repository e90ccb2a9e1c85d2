"""Footprint regularisation (``vector.footprints``) and ground areas (``vector.ground``) on synthetic shapes.

Shapes are drawn into a raster and traced back with ``label_polygons``, so the outlines are the pixel staircases
the pipeline hands over, not clean vector shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from skimage.draw import disk
from skimage.draw import polygon as draw_polygon

from vimscope.vector.footprints import dominant_angle, orthogonalise, regularise
from vimscope.vector.ground import ground_area_m2, map_pixel_size, to_map
from vimscope.vector.polygons import label_polygons


def _rotation(degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _traced(mask: np.ndarray) -> shapely.Polygon:
    (poly,) = [p for _, p in label_polygons(mask.astype(np.uint8), (0, 0), 1.0, background=0)]
    return poly


def _drawn(corners, degrees: float = 0.0, shape=(220, 220)) -> np.ndarray:
    """A filled polygon (corners around the origin, turned by ``degrees``) in a raster, centred."""
    c = np.asarray(corners, float) @ _rotation(degrees).T + np.array(shape[::-1]) / 2
    mask = np.zeros(shape, bool)
    rr, cc = draw_polygon(c[:, 1], c[:, 0], shape)
    mask[rr, cc] = True
    return mask


def _corner_angles(ring) -> np.ndarray:
    """Angle at each vertex of a ring, degrees in [0, 180]."""
    c = np.asarray(ring.coords)[:-1]
    a, b = np.roll(c, 1, axis=0) - c, np.roll(c, -1, axis=0) - c
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


RECTANGLE = [(-40, -25), (40, -25), (40, 25), (-40, 25)]
L_SHAPE = [(-50, -60), (50, -60), (50, -20), (-10, -20), (-10, 60), (-50, 60)]


@pytest.mark.parametrize("degrees", [0, 7, 18, 30, 45, 62, 80])
def test_a_jagged_raster_rectangle_becomes_four_right_angles(degrees):
    pixels = _traced(_drawn(RECTANGLE, degrees))
    assert len(pixels.exterior.coords) > 5 or degrees == 0  # a staircase to start with
    out = regularise(pixels, 1.0)
    assert out.geom_type == "Polygon"
    assert len(out.exterior.coords) - 1 == 4
    np.testing.assert_allclose(_corner_angles(out.exterior), 90.0, atol=1e-6)
    assert dominant_angle(out)[0] == pytest.approx(degrees % 90, abs=2.0)
    assert abs(out.area - 80 * 50) / (80 * 50) < 0.05


@pytest.mark.parametrize("degrees", [0, 20, 55])
def test_an_l_shape_stays_an_l(degrees):
    pixels = _traced(_drawn(L_SHAPE, degrees))
    out = regularise(pixels, 1.0)
    assert len(out.exterior.coords) - 1 == 6
    np.testing.assert_allclose(_corner_angles(out.exterior), 90.0, atol=1e-6)
    assert shapely.intersection(out, pixels).area / shapely.union(out, pixels).area > 0.95


@pytest.mark.parametrize("radius", [20, 45])
def test_a_circle_is_simplified_not_squared(radius):
    mask = np.zeros((220, 220), bool)
    mask[disk((110, 110), radius)] = True
    pixels = _traced(mask)
    out = regularise(pixels, 1.0)
    assert len(out.exterior.coords) < len(pixels.exterior.coords)  # simplified...
    assert not np.allclose(_corner_angles(out.exterior), 90.0, atol=1.0)  # ...but not squared
    assert shapely.hausdorff_distance(out, pixels) <= 1.0 + 1e-9


def test_holes_are_kept_and_squared_small_ones_filled():
    mask = _drawn([(-60, -60), (60, -60), (60, 60), (-60, 60)], 25)
    mask &= ~_drawn([(-20, -20), (20, -20), (20, 20), (-20, 20)], 25)  # a courtyard
    mask[70:72, 140:142] = False  # a 4-pixel speck of background
    pixels = _traced(mask)
    assert len(pixels.interiors) == 2
    out = regularise(pixels, 1.0, min_hole=16)
    assert len(out.interiors) == 1
    (hole,) = out.interiors
    assert len(hole.coords) - 1 == 4
    np.testing.assert_allclose(_corner_angles(hole), 90.0, atol=1e-6)
    np.testing.assert_allclose(_corner_angles(out.exterior), 90.0, atol=1e-6)
    assert shapely.Polygon(hole).area == pytest.approx(40 * 40, rel=0.1)
    assert len(regularise(pixels, 1.0).interiors) == 2  # without min_hole every hole stays


def test_a_multipolygon_is_regularised_part_by_part():
    a = _traced(_drawn(RECTANGLE, 30))
    b = shapely.affinity.translate(shapely.box(0, 0, 7, 3), 300, 0)  # already square, small
    out = regularise(shapely.MultiPolygon([a, b]), 1.0)
    assert out.geom_type == "MultiPolygon" and len(out.geoms) == 2
    assert len(out.geoms[0].exterior.coords) - 1 == 4 and out.geoms[1].equals(b)


def test_orthogonalise_refuses_what_would_change_the_shape_too_much():
    # a rhombus at 60°: every edge is straight, but squaring it would keep IoU well below 0.9
    rhombus = shapely.Polygon([(0, 0), (100, 0), (150, 86.6), (50, 86.6)])
    assert orthogonalise(rhombus, min_share=0.0) is rhombus
    squared = orthogonalise(rhombus, min_share=0.0, min_iou=0.0)
    assert squared is not rhombus and np.allclose(_corner_angles(squared.exterior), 90.0)


def test_map_coordinates_and_pixel_size_follow_the_affine():
    transform = (617100.0, 0.3, 0.0, 3344400.0, 0.0, -0.3)
    out = to_map(shapely.box(0, 0, 10, 20), transform)
    assert out.bounds == pytest.approx((617100.0, 3344394.0, 617103.0, 3344400.0))
    assert map_pixel_size(transform, 0.5) == pytest.approx(0.15)
    rotated = (0.0, 0.6, 0.8, 0.0, 0.8, -0.6)  # 1 m pixels turned by 53°
    assert map_pixel_size(rotated) == pytest.approx(1.0)
    assert to_map(shapely.box(0, 0, 1, 1), rotated).area == pytest.approx(1.0)


def test_ground_areas_in_metres_whatever_the_crs():
    square = shapely.box(500000, 4000000, 500100, 4000100)  # 100 m x 100 m in UTM 33N
    assert ground_area_m2([square], "EPSG:32633")[0] == pytest.approx(1e4)
    feet = shapely.box(0, 0, 100, 100)  # NAD83 / Texas Central (ftUS): 100 ft x 100 ft
    assert ground_area_m2([feet], "EPSG:2277")[0] == pytest.approx((100 * 1200 / 3937) ** 2)
    # one arc-minute square at the equator: about 1855 m x 1843 m on WGS 84 (pyproj.Geod), not 1/3600 deg²
    degrees = shapely.box(0, 0, 1 / 60, 1 / 60)
    assert ground_area_m2([degrees], "EPSG:4326")[0] == pytest.approx(1855.3 * 1843.0, rel=2e-3)
    # Web Mercator at 60° N: the plane square is 4x its ground area; the geodesic area is the ground's
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(10.0, 60.0)
    mercator = shapely.box(x, y, x + 200, y + 200)
    assert ground_area_m2([mercator], "EPSG:3857")[0] == pytest.approx(200 * 200 / 4, rel=0.01)
