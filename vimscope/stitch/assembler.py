"""Streaming assembly of tile outputs into finished, chunk-aligned output blocks.

Every output chunk knows up front how many planned tiles touch it; tile contributions are collected in a buffer
per open chunk, and a chunk is handed out (once) the moment its last tile has arrived. Tiles come in stripe-major
band order, so only the chunks along the current band and the current stripe edge are open at any time: memory is
bounded by stripe x band whatever the image size, and every block handed to a writer is a whole chunk (or the
clipped chunk at the image border), so writers never read-modify-write.

Two modes:
- ``place``: each pixel has one owner tile (halo cropping); tiles bring final values (uint8), placed as they are.
- ``accumulate``: window blending; tiles bring fixed-point values and an integer window, the chunk keeps
  ``sum(w * v)`` and ``sum(w)``; integer sums make the result exact and independent of arrival order.

Array work goes through an ``ops`` object (numpy here, torch on the GPU in ``stitch/device.py``) so the same
bookkeeping runs on either side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from vimscope.types import Box

# Probabilities in fixed point: p * P_ONE rounded (12 bits), 16 steps per uint8 level; (p_q + 8) // 16 is the uint8
# probability. 12-bit values times 14-bit window weights leave int32 room for 32 overlapping tiles.
P_STEPS = 16
P_ONE = 255 * P_STEPS


class NumpyOps:
    """The array operations the assembler needs, on numpy arrays."""

    name = "numpy"

    def zeros(self, shape, dtype: str, fill=0):
        return np.full(shape, fill, dtype=dtype) if fill else np.zeros(shape, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def argmax(self, a, axis: int):
        return np.argmax(a, axis=axis)

    def clamp_min(self, a, v):
        return np.maximum(a, v)

    def astype(self, a, dtype: str):
        return a.astype(dtype, copy=False)


NUMPY = NumpyOps()


def quantise_probabilities(acc, wsum, ops=NUMPY):
    """uint8 probabilities from ``sum(w * p_q)`` (h, w, K) and ``sum(w)`` (h, w): the mean / P_STEPS, rounded.

    With ``wsum`` 1 this is the per-tile quantisation, so crop, blend and whole-image runs share one formula.
    Uncovered pixels (``wsum`` 0) give 0.
    """
    d = ops.clamp_min(wsum, 1)[..., None] * P_STEPS
    return ops.astype((acc + d // 2) // d, "uint8")


def class_map(acc, ops=NUMPY):
    """Class index per pixel: argmax over the (weighted) fixed-point probabilities, ties to the lowest class."""
    return ops.astype(ops.argmax(acc, axis=-1), "uint8")


def finalize_segmentation(with_probabilities: bool):
    """Chunk finaliser for blended segmentation: classes (and probabilities) from the integer sums."""

    def finalize(acc, wsum, ops):
        out = {"classes": class_map(acc, ops)}
        if with_probabilities:
            out["probabilities"] = quantise_probabilities(acc, wsum, ops)
        return out

    return finalize


def finalize_mean(name: str, dtype: str = "float16"):
    """Chunk finaliser for blended float maps (features): the weighted mean in ``dtype``."""

    def finalize(acc, wsum, ops):
        w = ops.astype(ops.clamp_min(wsum, 1), "float32")[..., None]
        return {name: ops.astype(acc / w, dtype)}

    return finalize


def finalize_split(names_channels: list[tuple[str, int]]):
    """Chunk finaliser for placed values: split the stacked channels into named outputs (1 channel -> 2-D)."""

    def finalize(buf, _wsum, _ops):
        out, c = {}, 0
        for name, n in names_channels:
            out[name] = buf[..., c] if n == 1 else buf[..., c : c + n]
            c += n
        return out

    return finalize


def _nbytes(a) -> int:
    if a is None:
        return 0
    return int(a.nbytes) if hasattr(a, "nbytes") else a.element_size() * a.numel()


def _copy(a):
    return a.clone() if hasattr(a, "clone") else a.copy()


class _Sums:
    """An open chunk in accumulate mode: sums for its columns [lo, hi); columns left of ``lo`` are already final.

    Only the columns tiles have reached are held, and columns no remaining tile can reach are finalised early
    (uint8 instead of int32 sums): along a stripe edge, where chunks wait for the next stripe's halo, an open
    chunk costs a halo-wide strip of sums rather than a whole chunk.
    """

    __slots__ = ("lo", "hi", "acc", "wsum", "final")

    def __init__(self) -> None:
        self.lo = self.hi = 0
        self.acc = self.wsum = None
        self.final: list[tuple[int, dict]] = []  # (first column, finalised outputs)

    def nbytes(self) -> int:
        return _nbytes(self.acc) + _nbytes(self.wsum) + sum(_nbytes(a) for _, d in self.final for a in d.values())


class ChunkAssembler:
    """Turn a stream of tile contributions into finished chunks of one output group.

    ``boxes`` maps tile index -> the box (in this group's pixels, clipped to ``shape``) that the tile
    contributes to: its core in ``place`` mode, its whole window in ``accumulate`` mode. ``skip_tiles`` are tiles
    already done by an earlier run: chunks whose contributors are all skipped were written then and stay closed.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, int],
        chunk: int,
        boxes: Mapping[int, Box],
        channels: int,
        mode: str,
        finalize: Callable,
        dtype: str,
        ops=NUMPY,
        weight=None,
        fill=0,
        skip_tiles: Iterable[int] = (),
    ) -> None:
        if mode not in ("place", "accumulate"):
            raise ValueError(f"mode must be 'place' or 'accumulate', not {mode!r}")
        if mode == "accumulate" and weight is None:
            raise ValueError("accumulate mode needs a weight window")
        self.shape = (int(shape[0]), int(shape[1]))
        self.chunk = int(chunk)
        self.boxes = dict(boxes)
        self.channels = channels
        self.mode = mode
        self.finalize = finalize
        self.dtype = dtype
        self.ops = ops
        self.weight = weight
        self.fill = fill
        skip = set(skip_tiles)
        contributors: dict[tuple[int, int], list[int]] = {}
        for t, box in self.boxes.items():
            for key in self.chunks_of(box):
                contributors.setdefault(key, []).append(t)
        # chunks still to write -> the tiles that have not arrived yet
        self._waiting = {k: set(ts) for k, ts in contributors.items() if not all(t in skip for t in ts)}
        self.needed_tiles = {t for k in self._waiting for t in contributors[k]}
        self.total_chunks = len(contributors)
        self._open: dict[tuple[int, int], object] = {}
        self.peak_open = 0
        self.open_bytes = 0
        self.peak_bytes = 0

    # geometry -----------------------------------------------------------------------------------------------
    def chunks_of(self, box: Box) -> Iterable[tuple[int, int]]:
        c = self.chunk
        for cy in range(box.y // c, math.ceil(box.y1 / c)):
            for cx in range(box.x // c, math.ceil(box.x1 / c)):
                yield cy, cx

    def chunk_box(self, key: tuple[int, int]) -> Box:
        cy, cx = key
        c = self.chunk
        y0, x0 = cy * c, cx * c
        return Box(x0, y0, min(c, self.shape[1] - x0), min(c, self.shape[0] - y0))

    @property
    def pending_chunks(self) -> int:
        return len(self._waiting)

    @property
    def first_open_row(self) -> int:
        """Every chunk above this row (in this group's pixels) has been handed out, or never will be (no
        tile reaches it, or an earlier run wrote it)."""
        if not self._waiting:
            return self.shape[0]
        return min(cy for cy, _ in self._waiting) * self.chunk

    @property
    def open_chunks(self) -> int:
        return len(self._open)

    # streaming ----------------------------------------------------------------------------------------------
    def add(self, tile: int, data, origin: tuple[int, int]) -> list[tuple[Box, dict]]:
        """Add tile ``tile``'s values ``data`` (h, w, C) whose top-left pixel sits at ``origin`` = (x, y).

        ``data`` must cover the tile's contribution box. Returns the chunks this tile completed, each as
        (box in this group's pixels, {output name: numpy array}).
        """
        box = self.boxes.get(tile)
        if box is None:
            return []
        ox, oy = origin
        done = []
        for key in self.chunks_of(box):
            waiting = self._waiting.get(key)
            if waiting is None:
                continue
            cbox = self.chunk_box(key)
            part = cbox.intersect(box)
            waiting.discard(tile)
            if part is not None:
                src = (slice(part.y - oy, part.y1 - oy), slice(part.x - ox, part.x1 - ox))
                values = data[src]
                if values.ndim == 2:
                    values = values[..., None]
                before = self._size(key)
                if self.mode == "place":
                    buf = self._placed(key, cbox)
                    buf[part.y - cbox.y : part.y1 - cbox.y, part.x - cbox.x : part.x1 - cbox.x] = values
                else:
                    self._accumulate(key, cbox, part, values, self.weight[src])
                    if waiting:
                        self._finalise_left(key, cbox, min(self.boxes[t].x for t in waiting) - cbox.x)
                self._account(before, self._size(key))
            if not waiting:
                done.append(self._close(key, cbox))
        return done

    def _size(self, key) -> int:
        buf = self._open.get(key)
        if buf is None:
            return 0
        return buf.nbytes() if isinstance(buf, _Sums) else _nbytes(buf)

    def _account(self, before: int, after: int) -> None:
        self.open_bytes += after - before
        self.peak_bytes = max(self.peak_bytes, self.open_bytes)
        self.peak_open = max(self.peak_open, len(self._open))

    def _placed(self, key, cbox: Box):
        buf = self._open.get(key)
        if buf is None:
            buf = self._open[key] = self.ops.zeros((cbox.h, cbox.w, self.channels), self.dtype, self.fill)
        return buf

    def _accumulate(self, key, cbox: Box, part: Box, values, w) -> None:
        s = self._open.get(key)
        if s is None:
            s = self._open[key] = _Sums()
        a, b = part.x - cbox.x, part.x1 - cbox.x
        if s.acc is None:
            s.lo, s.hi = a, b
            s.acc = self.ops.zeros((cbox.h, b - a, self.channels), self.dtype)
            s.wsum = self.ops.zeros((cbox.h, b - a), "int32")
        elif a < s.lo or b > s.hi:  # reached new columns: widen the sums
            lo, hi = min(a, s.lo), max(b, s.hi)
            acc = self.ops.zeros((cbox.h, hi - lo, self.channels), self.dtype)
            wsum = self.ops.zeros((cbox.h, hi - lo), "int32")
            acc[:, s.lo - lo : s.hi - lo] = s.acc
            wsum[:, s.lo - lo : s.hi - lo] = s.wsum
            s.lo, s.hi, s.acc, s.wsum = lo, hi, acc, wsum
        rows = slice(part.y - cbox.y, part.y1 - cbox.y)
        cols = slice(a - s.lo, b - s.lo)
        s.acc[rows, cols] += values * w[..., None]
        s.wsum[rows, cols] += w

    def _finalise_left(self, key, cbox: Box, split: int) -> None:
        """Finalise the columns left of ``split`` (no waiting tile reaches them) when that frees a good share."""
        s = self._open[key]
        if split - s.lo < max(1, cbox.w // 4) or split >= s.hi:
            return
        k = split - s.lo
        out = self.finalize(s.acc[:, :k], s.wsum[:, :k], self.ops)
        s.final.append((s.lo, {name: self.ops.to_numpy(a) for name, a in out.items()}))
        s.acc, s.wsum, s.lo = _copy(s.acc[:, k:]), _copy(s.wsum[:, k:]), split  # copies: let the rest go

    def _close(self, key, cbox: Box) -> tuple[Box, dict]:
        del self._waiting[key]
        before = self._size(key)
        buf = self._open.pop(key, None)
        self._account(before, 0)
        if self.mode == "place":
            if buf is None:  # no tile reached inside the chunk (cannot happen for planned boxes): empty
                buf = self.ops.zeros((cbox.h, cbox.w, self.channels), self.dtype, self.fill)
            out = self.finalize(buf, None, self.ops)
            return cbox, {name: self.ops.to_numpy(a) for name, a in out.items()}
        parts = list(buf.final) if buf is not None else []
        if buf is not None and buf.acc is not None:
            last = self.finalize(buf.acc, buf.wsum, self.ops)
            parts.append((buf.lo, {name: self.ops.to_numpy(a) for name, a in last.items()}))
        if not parts:  # nothing reached the chunk: the finaliser's output for empty sums
            empty = self.finalize(
                self.ops.zeros((cbox.h, cbox.w, self.channels), self.dtype),
                self.ops.zeros((cbox.h, cbox.w), "int32"),
                self.ops,
            )
            return cbox, {name: self.ops.to_numpy(a) for name, a in empty.items()}
        if len(parts) == 1 and parts[0][0] == 0 and next(iter(parts[0][1].values())).shape[1] == cbox.w:
            return cbox, parts[0][1]
        out = {}
        for name, a in parts[0][1].items():  # columns no tile reached stay 0, as empty sums finalise
            full = np.zeros((cbox.h, cbox.w, *a.shape[2:]), a.dtype)
            for x0, named in parts:
                piece = named[name]
                full[:, x0 : x0 + piece.shape[1]] = piece
            out[name] = full
        return cbox, out

    def close_all(self) -> list[tuple[Box, dict]]:
        """Hand out every chunk still open (tiles that never came, e.g. a cancelled run); mostly for tests."""
        return [self._close(k, self.chunk_box(k)) for k in list(self._waiting)]
