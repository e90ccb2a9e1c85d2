"""The compiled seeds, flood and size limits (``instances.seeded``) against the plain path (``label_plain``:
scipy's labelling, numpy's size limits, the bucket-queue flood) on random and real nucleus maps: the same labels,
id for id, for every connectivity, threshold and limit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from vimscope.instances import InstanceParams
from vimscope.instances.watershed import _seeded_steps, label_instances, label_plain


def _maps_from_labels(labels: np.ndarray, rng) -> dict[str, np.ndarray]:
    """uint8 maps as a nuclei model gives them for a label map: probability, boundary (the rims) and a distance
    to the edge, with noise so that thresholds cut through objects and markers break up or merge."""
    inside = labels > 0
    rim = inside & (ndi.grey_erosion(labels, size=3) != ndi.grey_dilation(labels, size=3))
    distance = np.zeros(labels.shape)
    for sl, value in zip(ndi.find_objects(labels), range(1, int(labels.max()) + 1)):
        if sl is not None:
            distance[sl] = np.maximum(distance[sl], ndi.distance_transform_edt(labels[sl] == value))
    distance = distance / max(1.0, distance.max()) * 255
    noise = rng.normal(0, 25, (3, *labels.shape))
    as_u8 = lambda a: np.clip(a, 0, 255).astype(np.uint8)  # noqa: E731
    return {
        "nucleus": as_u8(np.where(inside, 220, 20) + noise[0]),
        "boundary": as_u8(np.where(rim, 200, 30) + noise[1]),
        "distance": as_u8(distance + noise[2] * inside),
    }


def _random_labels(seed: int, shape=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blobs = ndi.gaussian_filter(rng.random(shape), 3) > 0.5 + 0.02 * rng.standard_normal()
    return ndi.label(blobs)[0]


PARAMS = [
    {},
    {"connectivity": 2},
    {"min_marker_area": 1, "min_area": 1},
    {"min_marker_area": 9, "min_area": 40, "max_area_um2": 30.0, "min_area_um2": 2.0},
    {"nucleus_threshold": 0.0, "boundary_threshold": 1.0, "distance_threshold": 0.0},
    {"nucleus_threshold": 1.0},
    {"distance_threshold": 0.7, "boundary_threshold": 0.05, "connectivity": 2},
]


def _same(maps, params, mpp=0.25):
    params = InstanceParams.from_dict(params)
    assert _seeded_steps(maps, params) is not None  # the compiled path runs
    lo, hi = params.area_range(mpp)
    got = label_instances(maps, params, mpp=mpp)
    want = label_plain(maps, params, lo, hi)
    assert got.dtype == want.dtype == np.uint32
    np.testing.assert_array_equal(got, want)
    return int(got.max(initial=0))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_random_maps_give_the_plain_labels(seed, params):
    rng = np.random.default_rng(seed)
    maps = _maps_from_labels(_random_labels(seed), rng)
    _same(maps, params)
    _same({k: v for k, v in maps.items() if k != "boundary"}, params)  # no boundary map
    noise = {k: rng.integers(0, 256, v.shape).astype(np.uint8) for k, v in maps.items()}  # speckle: tiny seeds
    _same(noise, params)


def test_real_nuclei_maps_give_the_plain_labels():
    """Maps drawn from hand-labelled GBM40 nuclei (touching, pinched, of every size)."""
    from PIL import Image

    from tests.conftest import shared_path

    rng = np.random.default_rng(0)
    for name in ("01", "17", "33"):
        labels = np.asarray(Image.open(shared_path(f"data/labelled/nuclei-gbm40/{name}_labels.png"))).astype(np.int32)
        maps = _maps_from_labels(labels, rng)
        for params in PARAMS:
            _same(maps, params)
        assert _same(maps, {}) > 20


def test_empty_and_tiny_maps():
    for shape in ((1, 1), (1, 7), (5, 1), (0, 4)):
        maps = {k: np.full(shape, 255 if k != "boundary" else 0, np.uint8) for k in ("nucleus", "boundary", "distance")}
        _same(maps, {"min_marker_area": 1, "min_area": 1})
        _same({k: np.zeros(shape, np.uint8) for k in maps}, {})
