"""Instances across seams: a banded run finds the same objects as a whole-image run, none split or doubled."""

from __future__ import annotations

import numpy as np
import pytest

from vimscope.errors import ConfigError
from vimscope.instances import InstanceParams, label_instances
from vimscope.instances.cells import grid_cells, iter_cell_instances, object_means, paint_instances, row_bands
from vimscope.types import Box


def synthetic_nuclei(shape=(384, 512), seed=0, seams=(128, 256), max_radius=22):
    """Ellipses (some touching, many straddling the rows/columns in ``seams``) as nucleus + boundary maps."""
    from skimage.draw import ellipse
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int32)
    centres = [(s + rng.integers(-6, 7), x) for s in seams for x in range(30, shape[1] - 30, 45)]
    centres += [(y, s + rng.integers(-6, 7)) for s in seams for y in range(30, shape[0] - 30, 60)]
    centres += [tuple(rng.integers(20, np.array(shape) - 20)) for _ in range(40)]
    k = 0
    for cy, cx in centres:
        ry, rx = rng.integers(5, max_radius, 2)
        rr, cc = ellipse(cy, cx, ry, rx, shape=shape, rotation=rng.uniform(0, np.pi))
        free = truth[rr, cc] == 0
        if free.mean() < 0.9:
            continue
        k += 1
        truth[rr[free], cc[free]] = k
    edges = find_boundaries(truth, mode="inner")
    nucleus = np.where(truth > 0, 230, 10).astype(np.uint8)
    boundary = np.where(edges, 240, 15).astype(np.uint8)
    return truth, {"nucleus": nucleus, "boundary": boundary}


def _objects(labels):
    from scipy import ndimage as ndi

    return {v: sl for v, sl in enumerate(ndi.find_objects(labels), start=1) if sl is not None}


def _match(reference: np.ndarray, candidate: np.ndarray) -> list[float]:
    """Best IoU in ``candidate`` of every reference object; fails if a candidate object is used twice."""
    ious, used = [], set()
    for v, sl in _objects(reference).items():
        ref = reference == v
        ids, counts = np.unique(candidate[sl][ref[sl]], return_counts=True)
        best = max((c, i) for c, i in zip(counts, ids) if i) if (ids > 0).any() else (0, 0)
        other = candidate == best[1]
        ious.append((ref & other).sum() / (ref | other).sum() if best[1] else 0.0)
        assert best[1] not in used, f"object {v} shares its match {best[1]} with another object"
        used.add(best[1])
    return ious


def test_whole_image_run_recovers_touching_objects():
    truth, maps = synthetic_nuclei()
    labels = label_instances(maps, {"min_area": 8})
    assert labels.dtype == np.uint32
    assert labels.max() == truth.max()
    assert min(_match(truth, labels)) > 0.85  # the boundary ring is split between neighbours


@pytest.mark.parametrize(
    "cells",
    [row_bands((384, 512), 128), grid_cells((384, 512), (128, 256)), grid_cells((384, 512), (96, 100))],
    ids=["row-bands-128", "cells-128x256", "cells-96x100"],
)
def test_banded_run_matches_whole_image_run(cells):
    truth, maps = synthetic_nuclei()
    whole = label_instances(maps)

    def read(box: Box):
        return {k: v[box.y : box.y1, box.x : box.x1] for k, v in maps.items()}

    out = np.zeros(truth.shape, np.uint32)
    results = list(iter_cell_instances(read, truth.shape, cells=cells, margin=64, start_id=1))
    ids = [o.id for r in results for o in r.objects]
    assert ids == list(range(1, len(ids) + 1)), "ids are global, consecutive and unique"
    assert len(ids) == whole.max(), "no object split or duplicated"
    for r in results:
        assert not any(o.truncated for o in r.objects)
        paint_instances(out, r.objects, r.window)
    ious = _match(whole, out)
    assert min(ious) >= 0.99, f"worst per-object IoU {min(ious):.3f}"
    # the objects straddling a cell border really were there to test
    straddling = sum(1 for r in results for o in r.objects if o.box.intersect(r.cell) != o.box)
    assert straddling >= 10


def test_centroid_ownership_and_resume_ids():
    _, maps = synthetic_nuclei(seed=3)
    shape = maps["nucleus"].shape

    def read(box):
        return {k: v[box.y : box.y1, box.x : box.x1] for k, v in maps.items()}

    cells = row_bands(shape, 128)
    full = list(iter_cell_instances(read, shape, cells=cells))
    for r in full:
        for o in r.objects:
            cx, cy = o.centroid
            assert r.cell.x <= cx < r.cell.x1 and r.cell.y <= cy < r.cell.y1
    # resuming after the first cell continues the id count where it stopped
    first_count = len(full[0].objects)
    rest = list(iter_cell_instances(read, shape, cells=cells, skip={0}, start_id=first_count + 1))
    assert [o.id for r in rest for o in r.objects] == [o.id for r in full[1:] for o in r.objects]


def test_paint_without_window_and_measurements():
    _, maps = synthetic_nuclei(shape=(128, 160), seams=(64,))
    shape = maps["nucleus"].shape

    def read(box):
        return {k: v[box.y : box.y1, box.x : box.x1] for k, v in maps.items()}

    (result,) = iter_cell_instances(read, shape, cells=[Box(0, 0, 160, 128)])
    out = np.zeros(shape, np.uint32)
    paint_instances(out, result.objects)
    assert set(np.unique(out)) - {0} == {o.id for o in result.objects}
    obj = result.objects[0]
    means = object_means(obj, result.window, maps["nucleus"])
    assert float(means) == pytest.approx(230.0)


def test_too_small_a_margin_is_caught():
    """The seam test can fail: with 8 px of context, objects crossing borders are split or doubled."""
    truth, maps = synthetic_nuclei()
    whole = label_instances(maps)

    def read(box):
        return {k: v[box.y : box.y1, box.x : box.x1] for k, v in maps.items()}

    results = list(iter_cell_instances(read, truth.shape, cells=grid_cells(truth.shape, (96, 100)), margin=8))
    assert any(o.truncated for r in results for o in r.objects)
    assert sum(len(r.objects) for r in results) != whole.max()


def test_object_polygon_in_level0_pixels():
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    from vimscope.instances import InstanceObject

    obj = InstanceObject(1, Box(10, 20, 4, 3), mask, (12.0, 21.5), 2, 0)
    assert obj.polygon(scale=2.0).bounds == (22.0, 42.0, 26.0, 44.0)


def test_params_reject_unknown_keys():
    with pytest.raises(ConfigError, match="unknown postprocess key"):
        InstanceParams.from_dict({"nucleus_treshold": 0.4})
    assert InstanceParams.from_dict({"type": "watershed", "min_area": 3}).min_area == 3
