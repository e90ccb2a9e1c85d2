"""Instances come from foreground only, within the model's limits: nothing over blank or unwritten areas."""

from __future__ import annotations

import numpy as np
import pytest

from vimscope.config import ModelSpec
from vimscope.errors import ConfigError
from vimscope.instances import InstanceParams, detect_cell, label_instances, maps_of
from vimscope.types import Box

PARAMS = {"nucleus_threshold": 0.5, "boundary_threshold": 0.5, "distance_threshold": 0.3, "max_size": 48}
H, W = 128, 320
UNWRITTEN = slice(160, 240)  # no tile ran here: every channel 0 (outside the tissue, the region, a damaged tile)
GLASS = slice(240, 320)  # blank glass the model saw: background certain, a weak nucleus signal


def _disc(block, cy, cx, r, nucleus=240):
    yy, xx = np.mgrid[:H, :W]
    d = np.hypot(yy - cy, xx - cx)
    inside = d <= r
    block[0][inside] = 255 - nucleus
    block[1][inside] = nucleus
    block[3][inside] = np.maximum(block[3][inside], (255 * (1 - d[inside] / (r + 1))).astype(np.uint8))
    return inside


def slide_block():
    """(4, H, W) uint8 probabilities as the pipeline stores them: background, Nucleus, boundary, distance. Tissue
    with nuclei on the left (one touching the unwritten area), then the unwritten area, then blank glass whose
    weak signal (P(nucleus) 1/255, a faint distance map) must not become objects."""
    block = np.zeros((4, H, W), np.uint8)
    block[0, :, :160], block[1, :, :160] = 235, 20
    block[0, :, GLASS], block[1, :, GLASS] = 254, 1
    block[3, :, GLASS] = 5 + (np.arange(W - 240) % 7).astype(np.uint8)[None, :]
    discs = [_disc(block, cy, cx, 8) for cy in (24, 64, 104) for cx in (24, 64, 104)]
    discs.append(_disc(block, 64, 151, 8))  # its edge touches the unwritten area
    block[:, :, UNWRITTEN] = 0
    return block, discs


def class_map(block, n_classes=2):
    return np.argmax(block[:n_classes], axis=0).astype(np.uint8)  # ties (all 0) to background


def test_unwritten_and_blank_areas_give_no_objects():
    block, discs = slide_block()
    labels = label_instances(maps_of(block, 2, ["boundary", "distance"]), PARAMS)
    assert len(np.unique(labels[labels > 0])) == len(discs)
    assert not labels[:, 160:].any()
    assert (class_map(block)[labels > 0] > 0).all()  # every instance pixel is foreground in the class map
    for disc in discs:
        assert len(np.unique(labels[disc])) == 1 and labels[disc].all()
    # what 1 - P(background) gave: the disc beside the unwritten area floods all of it (the demo's giant nuclei)
    old = label_instances({"nucleus": 255 - block[0], "distance": block[3], "boundary": block[2]}, PARAMS)
    assert np.count_nonzero(old[:, UNWRITTEN]) == H * 80


def test_the_class_map_bounds_the_foreground():
    """Three classes (two nucleus types): foreground is their summed probability, and never where the class map
    says background."""
    block = np.zeros((5, 32, 32), np.uint8)
    block[0] = 255
    block[0, 8:24, 8:24], block[1, 8:24, 8:24], block[2, 8:24, 8:24] = 95, 80, 80  # nucleus 160/255 in total
    block[4, 8:24, 8:24] = 200
    maps = maps_of(block, 3, ["boundary", "distance"])
    assert maps["nucleus"][16, 16] == 160 and maps["nucleus"][0, 0] == 0
    labels = label_instances(maps, PARAMS)
    assert np.count_nonzero(labels) == 256
    cmap = np.argmax(block[:3], axis=0)  # background wins (95 > 80): not foreground after all
    assert not label_instances(maps_of(block, 3, ["boundary", "distance"], cmap), PARAMS).any()


def _detect(block, params, *, mpp=None, clip=None, scale=1.0):
    h, w = block.shape[1:]
    box = Box(0, 0, w, h)
    return detect_cell(
        block,
        class_map=class_map(block),
        n_classes=2,
        extra_maps=["boundary", "distance"],
        params=InstanceParams.from_dict(params),
        index=0,
        cell=box,
        window=box,
        out_shape=(h, w),
        scale=scale,
        mpp=mpp,
        clip=clip,
    )


def test_area_limits_in_square_micrometres():
    block = np.zeros((4, H, W), np.uint8)
    block[0] = 255
    small = _disc(block, 30, 30, 3).sum()  # 29 px
    medium = _disc(block, 64, 100, 8).sum()  # 197 px
    big = _disc(block, 64, 220, 40).sum()  # 5,025 px
    params = {**PARAMS, "max_size": 96, "min_area": 4, "min_area_um2": 4.0, "max_area_um2": 450.0}
    assert sorted(_detect(block, params).found.areas) == [small, medium, big]  # no pixel size: pixel limits only
    at_quarter = _detect(block, params, mpp=0.25)  # 29 px = 1.8 µm² (too small), 5,025 px = 314 µm² (kept)
    assert sorted(at_quarter.found.areas) == [medium, big]
    at_half = _detect(block, params, mpp=0.5)  # 29 px = 7.3 µm² (kept), 5,025 px = 1,256 µm²: no nucleus
    assert sorted(at_half.found.areas) == [small, medium] and at_half.found.ids.tolist() == [1, 2]


def test_weak_objects_are_dropped_and_ids_stay_consecutive():
    block = np.zeros((4, 64, 192), np.uint8)
    block[0] = 255
    for cx, p in ((24, 240), (72, 140), (120, 250), (168, 135)):  # 140/255 = 0.55: foreground, but weak
        yy, xx = np.mgrid[:64, :192]
        d = np.hypot(yy - 32, xx - cx)
        inside = d <= 10
        block[0][inside], block[1][inside] = 255 - p, p
        block[3][inside] = (255 * (1 - d[inside] / 11)).astype(np.uint8)
    kept = _detect(block, {**PARAMS, "min_probability": 0.6})
    assert len(kept) == 2 and kept.found.ids.tolist() == [1, 2]
    assert (kept.probability >= 0.6).all() and kept.found.centroids[:, 0].tolist() == [24.5, 120.5]
    assert len(kept.geoms) == 2 and all(g.area == a for g, a in zip(kept.geoms, kept.found.areas))
    painted = kept.found.id_table()[kept.found.labels]
    assert set(np.unique(painted)) == {0, 1, 2}  # the weak objects are never painted
    assert len(_detect(block, PARAMS)) == 4


def test_the_default_model_states_its_limits():
    spec = ModelSpec.load("vim_tiny_nuclei")
    params = InstanceParams.from_dict(spec.postprocess)
    assert params.min_probability == pytest.approx(0.5)
    lo, hi = params.area_range(spec.mpp)
    assert lo >= params.min_area and hi is not None
    assert hi * spec.mpp**2 <= 1000  # a 32,000 µm² "nucleus" is far out of bounds


@pytest.mark.parametrize(
    "bad",
    [{"min_probability": 1.5}, {"max_area_um2": 0}, {"min_area_um2": 10, "max_area_um2": 5}, {"min_area_um2": -1}],
)
def test_bad_limits_are_config_errors(bad):
    with pytest.raises(ConfigError, match="postprocess"):
        InstanceParams.from_dict(bad)


def test_objects_larger_than_the_margin_are_dropped():
    """A cell sees its window only: an object reaching the window's edge (larger than ``max_size``) is not whole
    there, and the next cell may keep another piece of it; it is dropped, the objects inside the margin stay."""
    from vimscope.instances import grow_box

    block = np.zeros((4, H, W), np.uint8)
    block[0] = 255
    _disc(block, 40, 60, 44)  # 88 px across: it reaches past a 16 px margin, not past a 48 px one
    _disc(block, 40, 200, 6)
    cell = Box(0, 0, W, 64)
    for margin, expected in ((16, 1), (48, 2)):
        window = grow_box(cell, margin, (H, W))
        params = InstanceParams.from_dict({**PARAMS, "max_size": margin})
        found = detect_cell(
            block[:, window.y : window.y1, window.x : window.x1],
            n_classes=2,
            extra_maps=["boundary", "distance"],
            params=params,
            index=0,
            cell=cell,
            window=window,
            out_shape=(H, W),
            scale=1.0,
        )
        assert len(found) == expected and not found.found.truncated.any()
