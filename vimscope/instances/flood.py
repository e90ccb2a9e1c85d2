"""Marker-controlled watershed of a uint8 elevation by a bucket queue: scikit-image's flood in O(n).

scikit-image's ``watershed`` keeps its frontier in a binary heap ordered by (elevation, age): O(n log n), and the
instance step spent 65 % of its time there (1.67 of 2.59 s on an 8192 x 2048 cell with 6,418 nuclei). The
pipeline's elevation is ``255 - distance`` of a uint8 map: 256 levels, so a queue per level, first in first out,
pops in the same (key, age) order in O(1). The flood is scikit-image's (0.26) without compactness and watershed
lines: a pixel takes its label when it is pushed, its key the larger of its elevation and its parent's key.

One rule differs, by design: scikit-image pushes every marker pixel at age 0, so markers of equal elevation leave
its heap in an order set by the heap's layout (and so by pixels far away); here they leave in raster order. The
result is then local (an object depends only on its own foreground blob, as the banded runner needs) and equal to
scikit-image's wherever no two marker pixels of different labels compete with equal keys
(``tests/instances/test_flood.py`` checks both).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _flood(elevation, labels, mask, diagonal):  # pragma: no cover - compiled
    """Flood ``labels`` (int32, (h, w), markers > 0, changed in place) over ``mask`` by ``elevation`` (uint8)."""
    h, w = labels.shape
    n = h * w
    flat_e = elevation.reshape(n)
    flat_l = labels.reshape(n)
    flat_m = mask.reshape(n)
    head = np.full(256, -1, np.int64)
    tail = np.full(256, -1, np.int64)
    nxt = np.empty(n, np.int64)
    dy = np.array([-1, 0, 0, 1, -1, -1, 1, 1])  # scikit-image's neighbour order: edges, then corners
    dx = np.array([0, -1, 1, 0, -1, 1, -1, 1])
    neighbours = 8 if diagonal else 4
    lowest = 256
    # the queue append is written out twice (markers, neighbours): a shared njit helper measured 19 % slower here
    for index in range(n):  # markers in raster order
        if flat_l[index] > 0:
            v = flat_e[index]
            nxt[index] = -1
            if tail[v] < 0:
                head[v] = index
            else:
                nxt[tail[v]] = index
            tail[v] = index
            if v < lowest:
                lowest = v
    while lowest < 256:
        index = head[lowest]
        if index < 0:
            lowest += 1
            continue
        head[lowest] = nxt[index]
        if head[lowest] < 0:
            tail[lowest] = -1
        label = flat_l[index]
        y, x = index // w, index % w
        for k in range(neighbours):
            yy, xx = y + dy[k], x + dx[k]
            if yy < 0 or yy >= h or xx < 0 or xx >= w:
                continue
            j = yy * w + xx
            if not flat_m[j] or flat_l[j] != 0:
                continue
            flat_l[j] = label
            v = max(flat_e[j], lowest)  # a key never below its parent's: the queue only moves up
            nxt[j] = -1
            if tail[v] < 0:
                head[v] = j
            else:
                nxt[tail[v]] = j
            tail[v] = j
    return labels


def flood_uint8(elevation: np.ndarray, markers: np.ndarray, mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Watershed labels (int32, (h, w)) of ``markers`` (ints, 0 = none; those outside ``mask`` dropped) flooding
    ``mask`` up a uint8 ``elevation``; ``connectivity`` 1 (4 neighbours) or 2 (8), as scikit-image's."""
    if elevation.dtype != np.uint8 or elevation.ndim != 2:
        raise ValueError(f"flood_uint8 takes a 2-D uint8 elevation, got {elevation.dtype} {elevation.shape}")
    if markers.shape != elevation.shape or mask.shape != elevation.shape:
        raise ValueError("elevation, markers and mask must have the same shape")
    mask = np.ascontiguousarray(mask, dtype=bool)
    labels = np.where(mask, markers, 0).astype(np.int32)
    return _flood(np.ascontiguousarray(elevation), labels, mask, connectivity >= 2)


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the flood now: a set-up step spends it once, not a first run."""
    flood_uint8(np.zeros((3, 3), np.uint8), np.eye(3, dtype=np.int32), np.ones((3, 3), bool), 1)
