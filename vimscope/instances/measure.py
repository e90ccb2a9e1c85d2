"""Per-label measurements of a label map in one compiled pass: pixel count, row and column sums, bounding box, and
the sums of other maps' values under each label.

What ``scipy.ndimage.find_objects`` plus ``np.bincount`` over the foreground's flat indices give, without their
five or six passes over a window of 17 Mpx and the index arrays between them (0.2 of 0.85 s of a cell's objects
and means went to ``nonzero`` alone). Sums are exact integers (int64); ``tests/instances/test_measure.py`` holds
them to scipy and numpy on random and real label maps.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _boxes(labels, n):  # pragma: no cover - compiled
    h, w = labels.shape
    area = np.zeros(n + 1, np.int64)
    sum_r = np.zeros(n + 1, np.int64)
    sum_c = np.zeros(n + 1, np.int64)
    y0 = np.zeros(n + 1, np.int64)
    y1 = np.zeros(n + 1, np.int64)
    x0 = np.zeros(n + 1, np.int64)
    x1 = np.zeros(n + 1, np.int64)
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v == 0:
                continue
            if area[v] == 0:  # first pixel in raster order: the box's top row
                y0[v], x0[v], x1[v] = r, c, c + 1
            area[v] += 1
            sum_r[v] += r
            sum_c[v] += c
            y1[v] = r + 1
            x0[v] = min(x0[v], c)
            x1[v] = max(x1[v], c + 1)
    return area, sum_r, sum_c, y0, y1, x0, x1


@numba.njit(cache=True, nogil=True)
def _sums(labels, n, values):  # pragma: no cover - compiled
    h, w = labels.shape
    out = np.zeros((n + 1, values.shape[2]), np.int64)
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v != 0:
                for k in range(values.shape[2]):
                    out[v, k] += values[r, c, k]
    return out


def label_boxes(labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per label 1..n (index 0 unused): ``area``, ``sum_r``/``sum_c`` (sums of pixel rows and columns), and the
    bounding box rows ``y0:y1`` and columns ``x0:x1`` (all 0 for a label with no pixel); int64, length n + 1."""
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"label_boxes takes a 2-D integer label map, got {labels.dtype} {labels.shape}")
    keys = ("area", "sum_r", "sum_c", "y0", "y1", "x0", "x1")
    return dict(zip(keys, _boxes(labels, int(n))))


def label_sums(labels: np.ndarray, n: int, values: np.ndarray) -> np.ndarray:
    """(n + 1, c) int64: the sum of ``values`` ((h, w, c) or (h, w) integers, any strides) under each label."""
    values = np.asarray(values)
    if values.shape[:2] != labels.shape or values.dtype.kind not in "iub":
        raise ValueError(f"label_sums takes integer values over the labels, got {values.dtype} {values.shape}")
    return _sums(np.ascontiguousarray(labels), int(n), values.reshape(*labels.shape, -1))
