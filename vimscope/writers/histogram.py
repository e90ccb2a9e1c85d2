"""Pixel counts per value of a uint8 label block, the summary's class pixels: one compiled pass that releases the
GIL (``np.bincount`` widens every pixel to 64 bits and holds the GIL), so the chunk threads count a whole slide's
class map at once."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _counts_u8(flat, out):
    for i in range(flat.size):
        out[flat[i]] += 1


def value_counts(block: np.ndarray) -> np.ndarray:
    """(256,) int64 counts of each value of a uint8 block (any shape); ``np.bincount(minlength=256)``'s values."""
    out = np.zeros(256, np.int64)
    if block.dtype != np.uint8:
        raise TypeError(f"value_counts counts uint8 blocks, not {block.dtype}")
    if block.size:
        _counts_u8(np.ascontiguousarray(block).reshape(-1), out)
    return out
