"""Planned tiles read, resampled, padded and batched by a bounded pool of reader threads.

Each thread owns its own slide handle (readers reopen by path when pickled; OpenSlide handles die after a
decode error, so sharing one would spread a damaged tile's failure). At most ``prefetch`` batches of reads are in
flight: the pool's queue never grows past that, whatever the slide size. Batches are uint8 (pinned when CUDA is
there, so the copy to the GPU overlaps compute); normalisation happens on the device.

Resampling is an exact integer area filter defined in global output coordinates: a pixel's value does not depend
on which tile (or whole-image read) produced it, so tiled and untiled runs see the same input.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from vimscope.errors import DamagedTileError
from vimscope.types import Box

_WEIGHT_BITS = 12  # fixed-point resampling weights: exact integer sums, order-independent


# resampling ---------------------------------------------------------------------------------------------------
def _area_taps(o0: int, o1: int, scale: float, length: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Source span and integer area weights for output pixels [o0, o1) along one axis.

    Output pixel o covers source [o * scale, (o + 1) * scale) clipped to [0, length). Returns (s0, s1, idx, w):
    source pixels [s0, s1) to read, and per output pixel the tap indices (relative to s0) and weights.
    """
    o = np.arange(o0, o1, dtype=np.float64)
    lo = np.minimum(o * scale, length)
    hi = np.minimum((o + 1) * scale, length)
    first = np.floor(lo).astype(np.int64)
    last = np.maximum(np.ceil(hi).astype(np.int64) - 1, first)
    s0 = int(first.min())
    s1 = int(last.max()) + 1
    taps = int((last - first).max()) + 1
    j = first[:, None] + np.arange(taps)[None, :]  # (n, taps) absolute source index
    overlap = np.clip(np.minimum(j + 1, hi[:, None]) - np.maximum(j, lo[:, None]), 0.0, None)
    w = np.rint(overlap * (1 << _WEIGHT_BITS)).astype(np.int64)
    w[j > last[:, None]] = 0
    w[:, 0] = np.maximum(w[:, 0], (w.sum(axis=1) == 0).astype(np.int64))  # degenerate spans keep one tap
    idx = np.clip(j, s0, s1 - 1) - s0
    return s0, s1, idx, w


def _resample_axis(a: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray, dtype) -> np.ndarray:
    """Weighted sum of taps along ``axis`` in ``dtype`` (integers: exact, so the sum order does not matter)."""
    shape = [1] * a.ndim
    shape[axis] = -1
    out = None
    for k in range(idx.shape[1]):
        term = np.take(a, idx[:, k], axis=axis).astype(dtype) * w[:, k].astype(dtype).reshape(shape)
        out = term if out is None else out + term
    return out


def _integer_factor(scale: float) -> int | None:
    r = round(scale)
    return int(r) if r >= 1 and abs(scale - r) < 1e-9 else None


def read_resampled(
    reader, level: int, scale: float, box: Box, level_size: tuple[int, int], *, rgb: bool = True, channels: int = 0
):
    """The output-pixel ``box`` (inside the output grid) read from ``level`` and area-resampled by ``scale``.

    ``scale`` is level pixels per output pixel; ``level_size`` the level's (width, height).
    """
    lw, lh = level_size
    if rgb:
        read = reader.read_rgb
    else:  # a model of another band count reads the first bands natively (its normalisation is its own)
        bands = list(range(channels)) if channels else None

        def read(b, lv):
            return reader.read(b, lv, bands=bands)

    f = _integer_factor(scale)
    if f == 1:
        src = read(Box(box.x, box.y, min(box.w, lw - box.x), min(box.h, lh - box.y)), level)
        return _pad_to(src, box.h, box.w)
    if f is not None:  # block mean: the common case (a 2x or 4x coarser target than the level)
        x0, y0 = box.x * f, box.y * f
        x1, y1 = min(box.x1 * f, lw), min(box.y1 * f, lh)
        src = read(Box(x0, y0, x1 - x0, y1 - y0), level)
        src = _pad_to(src, box.h * f, box.w * f, mode="edge")
        if src.dtype == np.uint8 and f <= 16:  # f*f*255 fits 16 bits: strided adds, no big temporaries
            acc = np.zeros((box.h, box.w, src.shape[-1]), np.uint16)
            for dy in range(f):
                for dx in range(f):
                    acc += src[dy::f, dx::f]
            return ((acc + (f * f) // 2) // (f * f)).astype(np.uint8)
        blocks = src.reshape(box.h, f, box.w, f, src.shape[-1])
        if np.issubdtype(src.dtype, np.integer):
            s = blocks.sum(axis=(1, 3), dtype=np.int64)
            return ((s + (f * f) // 2) // (f * f)).astype(src.dtype)
        return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    ys0, ys1, yi, yw = _area_taps(box.y, box.y1, scale, lh)
    xs0, xs1, xi, xw = _area_taps(box.x, box.x1, scale, lw)
    src = read(Box(xs0, ys0, xs1 - xs0, ys1 - ys0), level)
    integer = np.issubdtype(src.dtype, np.integer)
    # uint8 x 12-bit weights x a few taps fits int32 after one pass; the second pass needs int64
    first = np.int32 if integer and src.dtype.itemsize == 1 and scale < 64 else (np.int64 if integer else np.float64)
    a = _resample_axis(src, 0, yi, yw, first)
    a = _resample_axis(a, 1, xi, xw, np.int64 if integer else np.float64)
    norm = yw.sum(axis=1)[:, None, None] * xw.sum(axis=1)[None, :, None]
    if integer:
        return ((a + norm // 2) // norm).astype(src.dtype)
    return (a / norm).astype(np.float32)


def _pad_to(a: np.ndarray, h: int, w: int, mode: str = "edge") -> np.ndarray:
    """Grow ``a`` to (h, w) at the bottom/right (a level a pixel short of ``scale`` x the output grid)."""
    dh, dw = h - a.shape[0], w - a.shape[1]
    if dh <= 0 and dw <= 0:
        return a[:h, :w]
    return np.pad(a[:h, :w], ((0, max(dh, 0)), (0, max(dw, 0)), (0, 0)), mode=mode)


def pad_window(inner: np.ndarray, before: tuple[int, int], size: tuple[int, int], mode: str, value=0) -> np.ndarray:
    """Place ``inner`` at ``before`` = (top, left) in a (h, w) window, padding the rest by reflection or ``value``."""
    top, left = before
    h, w = size
    bottom, right = h - top - inner.shape[0], w - left - inner.shape[1]
    pads = ((top, bottom), (left, right), (0, 0))
    if not any(p for pair in pads for p in pair):
        return inner
    if mode == "reflect" and min(inner.shape[:2]) > 1:
        return np.pad(inner, pads, mode="reflect")
    if mode == "reflect":
        return np.pad(inner, pads, mode="edge")
    return np.pad(inner, pads, mode="constant", constant_values=value)


# one tile -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileGeometry:
    """What a reader thread needs to produce one tile window (all in output pixels)."""

    read_level: int
    level_scale: float
    level_size: tuple[int, int]  # (width, height) of the read level
    out_shape: tuple[int, int]  # (height, width) of the output grid
    tile: int

    @classmethod
    def from_plan(cls, plan, meta) -> TileGeometry:
        return cls(
            read_level=plan.read_level,
            level_scale=float(plan.level_scale),
            level_size=tuple(meta.level_dimensions[plan.read_level]),
            out_shape=tuple(plan.out_shape),
            tile=plan.tile,
        )

    def window(self, read_box: Box) -> Box:
        """The full ``tile`` x ``tile`` window starting at the planned read box (edge tiles are never short)."""
        return Box(read_box.x, read_box.y, self.tile, self.tile)


def read_window(
    reader, geom: TileGeometry, window: Box, *, pad: str = "reflect", value=0, rgb: bool = True, channels: int = 0
):
    """One tile window: the in-image part read and resampled, the rest padded. Raises DamagedTileError."""
    h, w = geom.out_shape
    inner = window.intersect(Box(0, 0, w, h))
    if inner is None:
        raise ValueError(f"tile window {window} lies outside the output grid {w}x{h}")
    a = read_resampled(reader, geom.read_level, geom.level_scale, inner, geom.level_size, rgb=rgb, channels=channels)
    return pad_window(a, (inner.y - window.y, inner.x - window.x), (window.h, window.w), pad, value)


# the pool -----------------------------------------------------------------------------------------------------
@dataclass
class TileBatch:
    """A batch of tile windows: uint8 (B, T, T, C) pixels on the host, pinned when CUDA is there."""

    tiles: list[int]
    pixels: torch.Tensor
    windows: list[Box]
    damaged: dict[int, str] = field(default_factory=dict)  # tile -> the reader's message
    # tile -> the damaged native tiles of the file under its window (io.damage.DamagedArea; empty when unknown)
    damaged_areas: dict[int, list] = field(default_factory=dict)
    # tile -> boxes of damaged pixels in window coordinates (output px from the window's corner); the rest is exact
    damaged_boxes: dict[int, list[Box]] = field(default_factory=dict)

    def to_device(self, device, mean, std, dtype=torch.float32) -> torch.Tensor:
        """(B, C, T, T) normalised on ``device``; ``mean``/``std`` in 0-1 units as a ModelSpec gives them."""
        x = self.pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous().float()
        m = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        s = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        x.sub_(m).div_(s)
        return x if dtype == torch.float32 else x.to(dtype)


def _clone_reader(reader):
    """A private handle for one thread: readers reopen by path when pickled."""
    try:
        return pickle.loads(pickle.dumps(reader))
    except Exception:
        return reader  # not picklable: readers are thread-safe, share it


class TileLoader:
    """Iterate ``batches`` (lists of tile indices of ``plan``) as TileBatch, reading ahead with ``workers`` threads.

    At most ``prefetch`` batches are being read ahead of the consumer; nothing else is queued.
    """

    decode = "reader"  # what decodes the tiles (the JPEG tile loader says nvjpeg or cpu-tiles)

    def __init__(
        self,
        reader,
        plan,
        batches: Sequence[Sequence[int]],
        *,
        workers: int = 4,
        prefetch: int = 2,
        pad: str = "reflect",
        pad_value=0,
        damaged_value=255,
        channels: int = 3,
        pin_memory: bool | None = None,
    ) -> None:
        self.reader = reader
        self.plan = plan
        self.batches = [list(b) for b in batches]
        self.workers = max(1, int(workers))
        self.prefetch = max(1, int(prefetch))
        self.pad = pad
        self.pad_value = pad_value
        self.damaged_value = damaged_value
        self.channels = channels
        self.geom = TileGeometry.from_plan(plan, reader.meta)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clones: list = []
        self._pool: ThreadPoolExecutor | None = None
        # a small ring of pinned buffers, reused: allocating pinned memory per batch is slow
        self._ring: deque[torch.Tensor] = deque()

    def _thread_reader(self):
        r = getattr(self._local, "reader", None)
        if r is None:
            r = self._local.reader = _clone_reader(self.reader)
            with self._lock:
                self._clones.append(r)
        return r

    def _read(self, tile_index: int):
        """(window, pixels, message or None, damaged areas): damaged native tiles of the file cost their own
        pixels only (filled with ``damaged_value``); the window is filled whole only when nothing of it decodes."""
        tile = self.plan.tiles[tile_index]
        window = self.geom.window(tile.read_box)
        reader = self._thread_reader()
        collect = getattr(reader, "collect_damage", None)
        try:
            with collect(fill=self.damaged_value) if collect else contextlib.nullcontext() as damage:
                a = read_window(
                    reader,
                    self.geom,
                    window,
                    pad=self.pad,
                    value=self.pad_value,
                    rgb=self.channels == 3,
                    channels=self.channels,
                )
        except DamagedTileError as e:
            self._local.reader = None  # a fresh handle for the next tile (OpenSlide's is dead after an error)
            a = np.full((window.h, window.w, self.channels), self.damaged_value, dtype=np.uint8)
            return window, a, str(e) or "damaged tile", None
        if damage:
            return window, np.ascontiguousarray(a), damage.summary(), damage.areas
        return window, np.ascontiguousarray(a), None, None

    def _window_boxes(self, window: Box, areas) -> list[Box]:
        """Level-0 boxes of damaged tiles as boxes of output pixels inside ``window`` (relative to its corner)."""
        if areas is None:
            return [Box(0, 0, window.w, window.h)]
        s = self.reader.meta.level_downsamples[self.geom.read_level] * self.geom.level_scale  # level-0 px per output px
        out = []
        for a in areas:
            b = a.box0
            x0, y0 = int(b.x // s) - window.x, int(b.y // s) - window.y
            x1, y1 = -int(-b.x1 // s) - window.x, -int(-b.y1 // s) - window.y
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(window.w, x1), min(window.h, y1)
            if x1 > x0 and y1 > y0:
                out.append(Box(x0, y0, x1 - x0, y1 - y0))
        return out

    def _submit_batch(self, pool: ThreadPoolExecutor, batch: list[int]) -> list[Future]:
        return [pool.submit(self._read, t) for t in batch]

    def _buffer(self, n: int, dtype) -> torch.Tensor:
        t = self.geom.tile
        shape = (n, t, t, self.channels)
        for i, buf in enumerate(self._ring):
            if tuple(buf.shape) == shape and buf.dtype == dtype:
                del self._ring[i]
                return buf
        return torch.empty(shape, dtype=dtype, pin_memory=self.pin_memory)

    def recycle(self, batch: TileBatch) -> None:
        """Give a batch's pinned buffer back once its copy to the device is done (keeps prefetch + 1)."""
        if self.pin_memory and len(self._ring) <= self.prefetch:
            self._ring.append(batch.pixels)

    def __iter__(self) -> Iterator[TileBatch]:
        pool = self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="vimscope-read")
        inflight: deque[tuple[list[int], list[Future]]] = deque()
        todo = iter(self.batches)
        try:
            for _ in range(self.prefetch):
                b = next(todo, None)
                if b is not None:
                    inflight.append((b, self._submit_batch(pool, b)))
            while inflight:
                tiles, futures = inflight.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    inflight.append((nxt, self._submit_batch(pool, nxt)))
                yield self._assemble(tiles, [f.result() for f in futures])
        finally:
            for _, futures in inflight:
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            for r in self._clones:
                if r is not self.reader:
                    with contextlib.suppress(Exception):
                        r.close()
            self._clones.clear()

    def _assemble(self, tiles: list[int], results) -> TileBatch:
        dtype = torch.from_numpy(results[0][1][:0]).dtype
        pixels = self._buffer(len(tiles), dtype)
        damaged, areas, boxes = {}, {}, {}
        for i, (t, (window, a, err, found)) in enumerate(zip(tiles, results)):
            pixels[i].copy_(torch.from_numpy(a))
            if err is not None:
                damaged[t] = err
                areas[t] = list(found or [])
                boxes[t] = self._window_boxes(window, found)
        windows = [r[0] for r in results]
        return TileBatch(tiles, pixels, windows, damaged=damaged, damaged_areas=areas, damaged_boxes=boxes)


def batches_in_order(tiles: Sequence[int], batch_size: int) -> list[list[int]]:
    """``tiles`` in order, cut into batches of ``batch_size`` (the last one may be short)."""
    tiles = list(tiles)
    return [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]


def default_workers() -> int:
    """Reader threads: decoding is the likely ceiling, so all cores but one, at least one, at most 16."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(16, n - 1 if n > 2 else n))


__all__ = [
    "TileLoader",
    "TileBatch",
    "TileGeometry",
    "read_window",
    "read_resampled",
    "pad_window",
    "batches_in_order",
    "default_workers",
]
