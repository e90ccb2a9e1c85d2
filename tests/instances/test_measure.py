"""The compiled per-label measurements (``instances.measure``) and the uint8 threshold comparisons of the seeds
against what scipy and numpy give: ``find_objects``, ``bincount`` over the foreground, a 256-entry table."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from scipy import ndimage as ndi

from vimscope.instances.measure import label_boxes, label_sums
from vimscope.instances.watershed import _as_unit, _compare


def _maps(seed: int):
    """Random label maps: sparse blobs with gaps in the ids, a dense map, one label, none."""
    rng = np.random.default_rng(seed)
    blobs = ndi.label(ndi.gaussian_filter(rng.random((61, 87)), 2) > 0.52)[0].astype(np.uint32)
    blobs[blobs % 5 == 3] = 0  # labels with no pixel left
    return [
        blobs,
        rng.integers(0, 40, (17, 23)).astype(np.int64),
        np.ones((3, 5), np.int32),
        np.zeros((4, 4), np.uint16),
    ]


def _real_maps():
    from PIL import Image

    from tests.conftest import shared_path

    root = shared_path("data/labelled/nuclei-gbm40")
    return [np.asarray(Image.open(root / f"{name}_labels.png")).astype(np.uint32) for name in ("01", "17")]


def _check(labels: np.ndarray) -> None:
    n = int(labels.max(initial=0))
    m = label_boxes(labels, n)
    slices = ndi.find_objects(labels) if n else []
    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    rows, cols = np.divmod(fg, labels.shape[1])
    np.testing.assert_array_equal(m["area"], np.bincount(flat[fg], minlength=n + 1))
    np.testing.assert_array_equal(m["sum_r"], np.bincount(flat[fg], weights=rows, minlength=n + 1))
    np.testing.assert_array_equal(m["sum_c"], np.bincount(flat[fg], weights=cols, minlength=n + 1))
    for v, sl in enumerate(slices, 1):
        box = (m["y0"][v], m["y1"][v], m["x0"][v], m["x1"][v])
        assert box == ((sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) if sl else (0, 0, 0, 0))
    values = np.random.default_rng(n).integers(0, 256, (3, *labels.shape)).astype(np.uint8)
    sums = label_sums(labels, n, np.moveaxis(values, 0, -1))  # the channel-last view the detections pass
    for k in range(3):
        want = np.bincount(flat, weights=values[k].ravel(), minlength=n + 1)
        np.testing.assert_array_equal(sums[1:, k], want[1:])


@pytest.mark.parametrize("seed", range(3))
def test_boxes_and_sums_equal_scipy_and_bincount(seed):
    for labels in _maps(seed):
        _check(labels)


def test_boxes_and_sums_of_real_nuclei_labels():
    for labels in _real_maps():
        _check(labels)


@pytest.mark.parametrize("op", [operator.gt, operator.lt, operator.ge, operator.le])
def test_uint8_thresholds_equal_the_table(op):
    a = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 48)
    for threshold in (-0.1, 0.0, 0.3, 0.5, 100 / 255, 0.999, 1.0, 1.5):
        want = op(_as_unit(np.arange(256, dtype=np.uint8)), threshold)[a]
        got = _compare(a, op, threshold)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, want)

    def band(x, t):  # not a step: the table lookup
        return (x > t) & (x < 0.6)

    np.testing.assert_array_equal(_compare(a, band, 0.3), band(_as_unit(np.arange(256, dtype=np.uint8)), 0.3)[a])
