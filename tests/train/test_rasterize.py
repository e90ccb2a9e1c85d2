"""Polygons to label maps with the pixel-edge convention: holes, GeoJSON slides, agreement with the writers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from tests.conftest import shared_path
from vimscope.train.rasterize import polygon_mask, rasterize


def test_polygon_with_a_hole_fills_pixel_centres_inside_the_ring_only():
    square = shapely.Polygon([(2, 1), (9, 1), (9, 7), (2, 7)], holes=[[(4, 3), (6, 3), (6, 5), (4, 5)]])
    expected = np.zeros((9, 12), bool)
    expected[1:7, 2:9] = True  # pixel (r, c) covers [c, c+1) x [r, r+1)
    expected[3:5, 4:6] = False
    assert np.array_equal(polygon_mask(square, (9, 12)), expected)


def test_holes_keep_what_was_underneath_and_later_items_win():
    big = shapely.box(0, 0, 6, 6)
    ring = shapely.Polygon([(1, 1), (5, 1), (5, 5), (1, 5)], holes=[[(2, 2), (4, 2), (4, 4), (2, 4)]])
    out = rasterize([(big, 1), (ring, 2)], (6, 6), dtype=np.uint8)
    expected = np.ones((6, 6), np.uint8)
    expected[1:5, 1:5] = 2
    expected[2:4, 2:4] = 1
    assert np.array_equal(out, expected)


def test_polygons_from_the_writers_rasterise_back_to_the_same_labels():
    from vimscope.vector.polygons import label_polygons

    rng = np.random.default_rng(3)
    labels = np.zeros((40, 50), np.int32)
    for k in range(1, 12):  # overlapping discs and boxes, some with holes punched by later ones
        r, c, s = rng.integers(3, 37), rng.integers(3, 47), rng.integers(2, 7)
        yy, xx = np.ogrid[:40, :50]
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= s * s] = k
    labels[10:14, 10:30] = 0
    items = [(geom, value) for value, geom in label_polygons(labels)]
    assert np.array_equal(rasterize(items, labels.shape), labels)


def test_qupath_geojson_on_a_real_slide(tmp_path):
    slide = shared_path("data/slides/kidney-48-5.tif")
    features = [
        {  # a 10x10 square with a 2x2 hole
            "type": "Feature",
            "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[100, 200], [110, 200], [110, 210], [100, 210], [100, 200]],
                    [[104, 204], [106, 204], [106, 206], [104, 206], [104, 204]],
                ],
            },
        },
        {
            "type": "Feature",
            "properties": {"objectType": "annotation", "classification": "Stroma"},  # pre-0.2 QuPath style
            "geometry": {"type": "Polygon", "coordinates": [[[120, 200], [124, 200], [124, 203], [120, 203]]]},
        },
        {  # an annotated area: pixels in it that no class covers are background, the rest unlabelled
            "type": "Feature",
            "properties": {"objectType": "annotation", "classification": {"name": "Region"}},
            "geometry": {"type": "Polygon", "coordinates": [[[98, 198], [126, 198], [126, 212], [98, 212]]]},
        },
    ]
    ann = tmp_path / "kidney.geojson"
    ann.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    from vimscope.train.datasets.base import load_source

    (im,) = load_source(
        {"kind": "slides", "path": str(slide), "annotations": str(ann), "classes": ["background", "Tumor", "Stroma"]}
    )
    assert im.image.shape == (14, 28, 3)
    expected = np.zeros((14, 28), np.uint8)
    expected[2:12, 2:12] = 1
    expected[6:8, 6:8] = 0
    expected[2:5, 22:26] = 2
    assert np.array_equal(im.classes, expected)
    import tifffile

    assert np.array_equal(im.image, tifffile.imread(slide)[198:212, 98:126, :3])


def test_unknown_annotation_classes_are_an_error(tmp_path):
    slide = shared_path("data/slides/kidney-48-5.tif")
    ann = tmp_path / "a.geojson"
    ann.write_text(
        json.dumps(
            [
                {
                    "type": "Feature",
                    "properties": {"classification": {"name": "Necrosis"}},
                    "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [5, 1], [5, 5], [1, 1]]]},
                }
            ]  # fmt: skip
        )
    )
    from vimscope.errors import ConfigError
    from vimscope.train.datasets.base import load_source

    with pytest.raises(ConfigError, match="Necrosis"):
        load_source({"kind": "slides", "path": str(slide), "annotations": str(ann), "classes": ["background", "Tumor"]})
