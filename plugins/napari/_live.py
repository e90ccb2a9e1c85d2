"""A class map that is still being written, shown as a multiscale labels layer that fills in band by band.

The pipeline writes only the full-resolution class map while it runs (pyramids come at the end), so the widget keeps
its own coarse levels: small ones in memory, updated from each block just written, larger ones read through with a
stride. Level 0 is read straight from the zarr array on demand. No dask here: dask's cache would keep showing
chunks from before they were written.
"""

from __future__ import annotations

import math

import numpy as np

from vimscope.types import Box

IN_MEMORY_SIDE = 4096  # levels no larger than this live in memory (<= 16 MiB as uint8)
DEFAULT_CHUNK = 512  # the writer's chunk side, when the array does not say


def _as_2d(array):
    """The (rows, cols) plane of a label array that may carry leading singleton axes (t, c, z)."""
    return array if array.ndim == 2 else _Plane(array)


class _Plane:
    """View of the last two axes of an array whose leading axes are all of length 1."""

    def __init__(self, array):
        self._array = array
        self._lead = (0,) * (array.ndim - 2)
        self.shape = tuple(array.shape[-2:])
        self.dtype = array.dtype
        self.ndim = 2

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self._array[self._lead + key])

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


class _Strided:
    """Every ``factor``-th pixel of a 2-D array, read on demand (nearest-neighbour level of a pyramid)."""

    def __init__(self, array, factor: int):
        self._array = array
        self.factor = factor
        self.shape = tuple(math.ceil(s / factor) for s in array.shape)
        self.dtype = array.dtype
        self.ndim = 2

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (2 - len(key))
        slices, squeeze = [], []
        for axis, k in enumerate(key):
            if isinstance(k, (int, np.integer)):
                k = int(k) % self.shape[axis]
                slices.append(slice(k * self.factor, k * self.factor + 1))
                squeeze.append(axis)
            else:
                start, stop, step = k.indices(self.shape[axis])
                slices.append(slice(start * self.factor, stop * self.factor, step * self.factor))
        block = np.asarray(self._array[slices[0].start : slices[0].stop, slices[1].start : slices[1].stop])
        block = block[:: slices[0].step or self.factor, :: slices[1].step or self.factor]
        return block.squeeze(axis=tuple(squeeze)) if squeeze else block

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


class LiveLabels:
    """A labels pyramid over a zarr class map under construction; ``update(box, block)`` fills a written block in."""

    def __init__(self, array, *, in_memory_side: int = IN_MEMORY_SIDE, chunk: int | None = None):
        from vimscope.writers import default_levels

        self.base = _as_2d(array)
        height, width = self.base.shape
        chunk = chunk or int((getattr(array, "chunks", None) or (DEFAULT_CHUNK,))[-1])
        # as many levels as the finished store will have, so the layer can take the final pyramid in place
        self.levels: list = [self.base]
        for level in range(1, default_levels((height, width), chunk)):
            factor = 2**level
            shape = (math.ceil(height / factor), math.ceil(width / factor))
            if max(shape) <= in_memory_side:
                self.levels.append(np.zeros(shape, self.base.dtype))
            else:
                self.levels.append(_Strided(self.base, factor))

    @property
    def shape(self) -> tuple[int, int]:
        return self.base.shape

    def read_block(self, box: Box) -> np.ndarray:
        """The class map inside ``box`` (output pixels); called from the worker thread, off the GUI."""
        return np.asarray(self.base[box.y : box.y1, box.x : box.x1])

    def update(self, box: Box, block: np.ndarray) -> None:
        """Copy a freshly written block (output pixels) into the in-memory coarse levels."""
        for k, level in enumerate(self.levels[1:], start=1):
            if not isinstance(level, np.ndarray):
                continue
            f = 2**k
            r0, c0 = math.ceil(box.y / f), math.ceil(box.x / f)
            sub = block[r0 * f - box.y :: f, c0 * f - box.x :: f]
            level[r0 : r0 + sub.shape[0], c0 : c0 + sub.shape[1]] = sub
