"""Outlines stay inside the image and the region: the output grid's last pixel edge can lie past the image's
(2220.44 on a 2220 px wide slide), and a pixel whose centre is in the region reaches half a pixel out of it."""

from __future__ import annotations

import numpy as np
import shapely

from vimscope.instances import InstanceParams, detect_cell
from vimscope.types import Box
from vimscope.vector import MIN_REGION_AREA, iter_class_regions, outline_clip
from vimscope.vector.roi import RegionMask

SCALE = 3.8  # level-0 px per output px: 40 x 32 output px cover 152 x 121.6 level-0 px of a 150 x 120 image
IMAGE = (150, 120)
OUT = (32, 40)


def _block(mask: np.ndarray) -> np.ndarray:
    """Probabilities (background, Nucleus, boundary, distance) with nuclei where ``mask`` is set."""
    block = np.zeros((4, *mask.shape), np.uint8)
    block[0] = np.where(mask, 10, 245)
    block[1] = 255 - block[0]
    block[3] = np.where(mask, 200, 0)
    return block


def _detect(block, clip=None):
    h, w = block.shape[1:]
    box = Box(0, 0, w, h)
    return detect_cell(
        block,
        class_map=np.argmax(block[:2], axis=0),
        n_classes=2,
        extra_maps=["boundary", "distance"],
        params=InstanceParams.from_dict({"min_area": 4, "max_size": 40}),
        index=0,
        cell=box,
        window=box,
        out_shape=(h, w),
        scale=SCALE,
        clip=clip,
    )


def _corner_nuclei():
    mask = np.zeros(OUT, bool)
    mask[24:, 33:] = True  # the bottom-right corner of the grid
    mask[2:8, 2:8] = True
    return mask


def test_detections_are_clipped_to_the_image():
    block = _block(_corner_nuclei())
    unclipped = _detect(block)
    assert shapely.bounds(unclipped.geoms)[:, 2].max() == 40 * SCALE  # 152 > 150: what the demo run wrote
    got = _detect(block, outline_clip(IMAGE))
    assert len(got) == 2 and shapely.is_valid(got.geoms).all()
    bounds = shapely.bounds(got.geoms)
    assert bounds[:, 2].max() == 150 and bounds[:, 3].max() == 120 and bounds.min() >= 0
    assert got.geoms[0].equals(unclipped.geoms[0])  # the one inside is untouched


def test_detections_are_clipped_to_the_region():
    roi = shapely.Polygon([(0, 0), (150, 0), (0, 120)])
    region = RegionMask(roi, SCALE)
    mask = np.zeros(OUT, bool)
    for y in range(2, 30, 6):
        for x in range(2, 38, 6):
            mask[y : y + 4, x : x + 4] = True
    inside = region.mask(Box(0, 0, OUT[1], OUT[0]))
    block = _block(mask) * inside[None]  # the pipeline writes zeros outside the region
    unclipped = _detect(block)
    assert not shapely.covered_by(unclipped.geoms, roi).all()  # pixels on the diagonal reach out of it
    got = _detect(block, outline_clip(IMAGE, region))
    assert len(got) == len(unclipped) and shapely.is_valid(got.geoms).all()
    assert shapely.covered_by(got.geoms, roi.buffer(1e-9)).all()
    assert (shapely.area(got.geoms) > 0).all()


def test_class_regions_are_clipped_and_slivers_dropped():
    classes = np.zeros(OUT, np.uint8)
    classes[10:, 20:] = 1  # a tissue region reaching the grid's bottom-right corner
    classes[2, 2] = classes[5, 9] = 2  # single-pixel slivers
    classes[2:4, 30:32] = 2  # 4 px
    read = lambda box: classes[box.y : box.y1, box.x : box.x1]  # noqa: E731
    every = list(iter_class_regions(read, OUT, band_height=8, scale=SCALE))
    assert sorted(v for v, _ in every) == [1, 2, 2, 2]
    assert max(p.bounds[2] for _, p in every) > IMAGE[0]
    kept = list(
        iter_class_regions(read, OUT, band_height=8, scale=SCALE, min_area=MIN_REGION_AREA, clip=outline_clip(IMAGE))
    )
    assert [v for v, _ in kept] == [1]
    (poly,) = [p for _, p in kept]
    assert poly.bounds == (20 * SCALE, 10 * SCALE, 150, 120) and poly.is_valid
