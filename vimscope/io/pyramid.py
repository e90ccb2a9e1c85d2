"""Coarser levels for images whose file has no (or too short a) pyramid, computed lazily and cached.

WHY: a thumbnail, a tissue mask or a zoomed-out view of a 50k-px plain TIFF must not hold level 0 in memory.
Each computed level averages f x f blocks of the file's coarsest level, read in row strips of bounded size.
Levels small enough (``CACHE_BYTES``) are computed once and kept; larger ones are recomputed per read.
A damaged tile of the source level costs its own pixels only: the source is read around it (``io.damage``), its
footprint is 0 here, and every read names the damaged source tiles under its box so the reader can report them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from vimscope.types import Box

MAX_OVERVIEW_SIDE = 1024  # add levels until the coarsest one fits in this many pixels per side
CACHE_BYTES = 64 << 20  # a computed level at most this big is kept in memory once computed
STRIP_PIXELS = 4 << 20  # source pixels read per strip while computing (bounds memory)


def computed_level_sizes(width: int, height: int) -> list[tuple[int, int, int]]:
    """(width, height, factor) of each level to add below a coarsest native level of width x height."""
    out = []
    f = 1
    w, h = width, height
    while max(w, h) > MAX_OVERVIEW_SIDE:
        f *= 2
        w, h = math.ceil(width / f), math.ceil(height / f)
        out.append((w, h, f))
    return out


def block_mean(data: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f blocks of an (h, w, c) array; partial blocks at the right/bottom average their valid pixels.

    Sums f*f strided views into an output-sized accumulator, so memory stays O(output), not O(input).
    """
    if f == 1:
        return data
    h, w, c = data.shape
    oh, ow = math.ceil(h / f), math.ceil(w / f)
    kind, size = data.dtype.kind, data.dtype.itemsize
    if kind == "f":
        acc_dtype = np.float64
    elif (kind in "ub" and size <= 2 and f <= 256) or kind == "b":
        acc_dtype = np.uint32  # 256 * 256 * 65535 < 2**32; a narrow accumulator is ~3x faster
    elif kind == "i" and size <= 2 and f <= 128:
        acc_dtype = np.int32
    else:
        acc_dtype = np.int64
    acc = np.zeros((oh, ow, c), acc_dtype)
    for i in range(min(f, h)):
        for j in range(min(f, w)):
            view = data[i::f, j::f]
            target = acc[: view.shape[0], : view.shape[1]]
            np.add(target, view, out=target, casting="unsafe")
    rows = np.minimum(f, h - np.arange(oh) * f)
    cols = np.minimum(f, w - np.arange(ow) * f)
    counts = (rows[:, None] * cols[None, :])[..., None]
    if data.dtype.kind == "f":
        return (acc / counts).astype(data.dtype)
    if data.dtype == np.bool_:
        return acc * 2 >= counts
    return ((acc + counts // 2) // counts).astype(data.dtype)


class ComputedLevels:
    """Levels ``first``, ``first + 1``... of a reader, each a factor 2 coarser than the one before.

    ``read_source(box, bands)`` reads the file's coarsest level around damaged tiles: (pixels (h, w, c) in the
    native dtype, with damaged tiles 0; [(damaged tile box in source pixels, reason)]).
    """

    def __init__(
        self,
        read_source: Callable[[Box, list[int]], tuple[np.ndarray, list[tuple[Box, str]]]],
        source_size: tuple[int, int],
        first: int,
        bands: int,
        dtype: np.dtype,
    ):
        self._read_source = read_source
        self.source_size = source_size
        self.first = first
        self.bands = bands
        self.dtype = np.dtype(dtype)
        self.sizes = computed_level_sizes(*source_size)
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.RLock()
        self.damaged: dict[tuple[int, ...], tuple[Box, str]] = {}  # damaged source tiles met while caching

    def __len__(self) -> int:
        return len(self.sizes)

    def factor(self, level: int) -> int:
        return self.sizes[level - self.first][2]

    def _cacheable(self, level: int) -> bool:
        w, h, _ = self.sizes[level - self.first]
        return w * h * self.bands * self.dtype.itemsize <= CACHE_BYTES

    def footprint(self, source_box: Box, level: int) -> Box:
        """The pixels of computed ``level`` that a box of the source level touches (rounded outwards)."""
        f = self.factor(level)
        w, h, _ = self.sizes[level - self.first]
        x0, y0 = source_box.x // f, source_box.y // f
        return Box(x0, y0, min(w, -(-source_box.x1 // f)) - x0, min(h, -(-source_box.y1 // f)) - y0)

    def read(self, box: Box, level: int, bands: list[int]) -> tuple[np.ndarray, list[tuple[Box, str]]]:
        """(pixels of ``box`` at computed ``level``, [(damaged source tile, reason)] whose footprint it touches)."""
        if not self._cacheable(level):
            return self._from_source(box, level, bands)
        full = self._materialise(level)
        with self._lock:
            damaged = list(self.damaged.values())
        under = [(b, r) for b, r in damaged if self.footprint(b, level).intersect(box) is not None]
        return full[box.y : box.y1, box.x : box.x1][..., bands], under

    def _from_source(self, box: Box, level: int, bands: list[int]) -> tuple[np.ndarray, list[tuple[Box, str]]]:
        f = self.factor(level)
        sw, sh = self.source_size
        x0, x1 = box.x * f, min(box.x1 * f, sw)
        out = np.zeros((box.h, box.w, len(bands)), self.dtype)
        damaged: list[tuple[Box, str]] = []
        rows_per_strip = max(1, STRIP_PIXELS // max(1, (x1 - x0) * f))
        for r0 in range(0, box.h, rows_per_strip):
            r1 = min(box.h, r0 + rows_per_strip)
            y0, y1 = (box.y + r0) * f, min((box.y + r1) * f, sh)
            src, bad = self._read_source(Box(x0, y0, x1 - x0, y1 - y0), bands)
            damaged += bad
            out[r0:r1] = block_mean(src, f)
        return out, damaged

    def _materialise(self, level: int) -> np.ndarray:
        cached = self._cache.get(level)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(level)
            if cached is not None:
                return cached
            w, h, _ = self.sizes[level - self.first]
            all_bands = list(range(self.bands))
            if level > self.first and self._cacheable(level - 1):
                finer = self._materialise(level - 1)
                data = block_mean(finer, 2)[:h, :w]
            else:
                data, damaged = self._from_source(Box(0, 0, w, h), level, all_bands)
                for b, reason in damaged:
                    self.damaged.setdefault(tuple(b.to_list()), (b, reason))
            data.setflags(write=False)
            self._cache[level] = data
            return data
