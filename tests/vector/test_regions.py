"""Class regions polygonised band by band equal those of the whole map: regions crossing bands are merged."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from tests.vector.test_polygons import random_label_map
from vimscope.vector.polygons import label_polygons, rasterize
from vimscope.vector.regions import iter_class_regions


def _normalise(items):
    return sorted((v, shapely.normalize(p).wkt) for v, p in items)


@pytest.mark.parametrize("band_height", [5, 8, 13, 48])
def test_banded_regions_equal_whole_map(band_height):
    labels = random_label_map(11, shape=(48, 64))
    labels[10:40, 5:60] = np.where(labels[10:40, 5:60] == 0, 1, labels[10:40, 5:60])  # regions spanning bands

    def read(box):
        return labels[box.y : box.y1, box.x : box.x1]

    banded = list(iter_class_regions(read, labels.shape, band_height=band_height, simplify=0))
    whole = list(label_polygons(labels))
    assert _normalise(banded) == _normalise(whole)
    back = rasterize([p for _, p in banded], [v for v, _ in banded], labels.shape)
    np.testing.assert_array_equal(back, np.where(labels == 0, 0, labels))


def test_region_simplification_is_capped_and_applied():
    labels = np.zeros((40, 40), np.uint8)
    labels[5:35, 5:35] = 1
    with pytest.raises(ValueError, match="at most 0.5"):
        list(iter_class_regions(lambda b: labels[b.y : b.y1], labels.shape, simplify=1.0))
    ((value, poly),) = iter_class_regions(lambda b: labels[b.y : b.y1], labels.shape, band_height=7, scale=2.0)
    assert value == 1 and poly.equals(shapely.box(10, 10, 70, 70)) and len(poly.exterior.coords) == 5
