"""Instance labels of the pipeline's uint8 maps in a few compiled passes: seeds, their components, the flood and
the size limits, as ``watershed.label_instances`` states them with scipy and numpy.

The steps, each what the plain path does with one or more passes over the window (17 Mpx in a run's cell) and
arrays of its size between them: foreground and markers by uint8 thresholds; markers labelled 4- or 8-connected
in raster order of their first pixel (``scipy.ndimage.label``'s numbering) by union-find, their sizes on the way,
small markers dropped; the bucket-queue flood (``flood._flood``) counting each label's pixels; labels outside the
area limits dropped and the rest renumbered in order. On a run's cells this is 2.5 times faster than the plain
path; ``tests/instances/test_seeded.py`` holds the two to the same labels.
"""

from __future__ import annotations

import numba
import numpy as np

from vimscope.instances.flood import _flood


@numba.njit(cache=True, nogil=True, inline="always")
def _find(parent, i):  # pragma: no cover - compiled
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _meet(parent, best, other):  # pragma: no cover - compiled
    """A marker pixel next to id ``other`` (0: none) as well as ``best``: their sets joined under the smaller
    root; returns the id the pixel takes (``best``, else ``other``). Roots are resolved at the end."""
    if other == 0 or other == best:
        return best
    if best == 0:
        return other
    a, b = _find(parent, best), _find(parent, other)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b
    return best


@numba.njit(cache=True, nogil=True)
def _seeds(nucleus, boundary, distance, kn, kb, kd, diagonal, labels, fg):  # pragma: no cover - compiled
    """Foreground (``nucleus >= kn``) into ``fg``; markers (foreground, ``boundary < kb``, ``distance >= kd``)
    labelled into ``labels`` with provisional ids; returns each provisional id's root (its smallest id: the one
    its component's first pixel took) and pixel count."""
    h, w = nucleus.shape
    # at most one provisional id per two pixels; np.empty: only the ids taken are touched (arrays that grow, as
    # variables the loop reassigns, made it twice as slow)
    parent = np.empty(h * w // 2 + 2, np.int32)
    size = np.empty(h * w // 2 + 2, np.int64)
    n = 0
    for r in range(h):
        for c in range(w):
            f = nucleus[r, c] >= kn
            fg[r, c] = f
            if not (f and boundary[r, c] < kb and distance[r, c] >= kd):
                continue
            best = 0  # the first labelled neighbour before this pixel gives its id, whatever its root
            if c > 0:
                best = _meet(parent, best, labels[r, c - 1])
            if r > 0:
                best = _meet(parent, best, labels[r - 1, c])
                if diagonal and c > 0:
                    best = _meet(parent, best, labels[r - 1, c - 1])
                if diagonal and c + 1 < w:
                    best = _meet(parent, best, labels[r - 1, c + 1])
            if best == 0:
                n += 1
                parent[n], size[n] = n, 0
                best = n
            labels[r, c] = best
            size[best] += 1
    for i in range(1, n + 1):
        parent[i] = _find(parent, i)
    return parent[: n + 1], size[: n + 1]


@numba.njit(cache=True, nogil=True)
def _components(parent, size, min_size):  # pragma: no cover - compiled
    """Per provisional id its component's id (1.. in order of the roots) or 0 when the component is smaller than
    ``min_size``; and each component's size."""
    n = len(parent) - 1
    final = np.zeros(n + 1, np.int32)
    total = np.zeros(n + 1, np.int64)
    for i in range(1, n + 1):
        total[parent[i]] += size[i]
    k = 0
    for i in range(1, n + 1):
        if parent[i] == i:
            k += 1
            final[i] = k
    for i in range(1, n + 1):
        final[i] = final[parent[i]] if total[parent[i]] >= min_size else 0
    area = np.zeros(k + 1, np.int64)
    for i in range(1, n + 1):
        if parent[i] == i and final[i] > 0:
            area[final[i]] = total[i]
    return final, area


@numba.njit(cache=True, nogil=True)
def _relabel(labels, table):  # pragma: no cover - compiled
    flat = labels.reshape(labels.size)
    for i in range(flat.size):
        if flat[i] != 0:
            flat[i] = table[flat[i]]


def seeded_labels(nucleus, boundary, distance, kn: int, kb: int, kd: int, params, lo: int, hi: int | None):
    """Instance labels (uint32, 0 = background, 1..n) of uint8 maps, as ``label_instances`` gives them: foreground
    ``nucleus >= kn``, markers also ``boundary < kb`` and ``distance >= kd`` (thresholds already as uint8 steps,
    0-256), the flood up ``255 - distance``, objects of ``lo``..``hi`` pixels kept. ``boundary`` may be None."""
    nucleus = np.ascontiguousarray(nucleus, np.uint8)
    distance = np.ascontiguousarray(distance, np.uint8)
    boundary = None if boundary is None else np.ascontiguousarray(boundary, np.uint8)
    if boundary is None:  # every uint8 value is below 256: no condition
        boundary, kb = distance, 256
    labels = np.zeros(nucleus.shape, np.int32)
    fg = np.empty(nucleus.shape, np.bool_)
    diagonal = params.connectivity >= 2
    parent, size = _seeds(nucleus, boundary, distance, kn, kb, kd, diagonal, labels, fg)
    final, area = _components(parent, size, max(1, int(params.min_marker_area)))
    if not area.any():
        return np.zeros(nucleus.shape, np.uint32)
    _relabel(labels, final)
    _flood(255 - distance, labels, fg, diagonal, area)
    keep = area >= lo
    if hi is not None:
        keep &= area <= hi
    keep[0] = False
    if not keep[1:].all():
        _relabel(labels, np.where(keep, np.cumsum(keep), 0).astype(np.int32))
    return labels.view(np.uint32)
