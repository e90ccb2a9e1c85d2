"""The one reader interface every backend implements, and what they share.

A backend implements five hooks (``_open``, ``_close``, ``_read_meta``, ``_read_level``, optionally
``_read_associated``); this base class adds box checks, computed overview levels, RGB conversion with one
stretch per image, dask arrays, per-thread handles and pickling by path.

Thread safety: each thread gets its own handle (``threading.local``); libraries' handles are never shared.
Pickling: a reader pickles as (path, mpp override, backend, options) and reopens on the other side;
no file handle crosses a process boundary.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from vimscope.errors import ConfigError, RegionError
from vimscope.io.meta import SlideMeta
from vimscope.io.pyramid import ComputedLevels
from vimscope.types import Box

DASK_MIN_CHUNK = 512  # dask chunks: the smallest multiple of the native tile that is at least this
STRETCH_PERCENTILES = (0.5, 99.5)


_RGB_NAMES = (("b04", "b4", "red", "r"), ("b03", "b3", "green", "g"), ("b02", "b2", "blue", "b"))


def choose_rgb_bands(names: list[str] | None, bands: int, is_rgb: bool, alpha_band: int | None) -> list[int]:
    """Bands shown as R, G, B: natural colour where names tell (Sentinel-2 B04/B03/B02, red/green/blue)."""
    if is_rgb:
        return [0, 1, 2]
    if names:
        lowered = [n.lower() for n in names]
        picked = []
        for choices in _RGB_NAMES:
            found = next((lowered.index(c) for c in choices if c in lowered), None)
            picked.append(found)
        if all(p is not None for p in picked):
            return picked
    data_bands = [b for b in range(bands) if b != alpha_band]
    return data_bands[:3] if len(data_bands) >= 3 else data_bands


def _reopen(path: str, mpp: float | None, backend: str, options: dict, stretch) -> SlideReader:
    from vimscope.io.open import open_slide

    reader = open_slide(path, mpp=mpp, backend=backend, **options)
    if stretch is not None and reader.meta.stretch is None:
        reader.meta.stretch = [tuple(s) for s in stretch]
    return reader


class SlideReader(ABC):
    """A lazily read, multi-level image: a whole-slide image, a microscopy image or a georeferenced raster."""

    backend: ClassVar[str] = ""

    def __init__(self, path, *, mpp: float | None = None, source=None, **options: Any):
        if mpp is not None and not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"--mpp must be a positive number, got {mpp!r}")
        self.path = str(path)
        self.source = str(source if source is not None else path)  # what the backend opens
        self.options = options
        self._mpp_override = mpp
        self._local = threading.local()
        self._lock = threading.RLock()
        self._handles: list[Any] = []
        self._generation = 0
        try:
            meta = self._read_meta(self._handle())
        except BaseException:
            self.close()
            raise
        meta.path = self.path
        meta.backend = self.backend
        self._native = meta.level_count
        self._level_tiles: list[tuple[int, int] | None] = list(
            getattr(self, "_native_tile_sizes", None) or [meta.tile_size] * self._native
        )
        self._add_computed_levels(meta)
        if mpp is not None:
            meta.mpp = float(mpp)
            meta.mpp_source = "override"
        elif meta.mpp is not None:
            meta.mpp_source = meta.mpp_source or "file"
        self.meta = meta
        self._stretch_lock = threading.Lock()

    # ----------------------------------------------------------------- backend hooks
    @abstractmethod
    def _open(self) -> Any:
        """A new handle for the calling thread."""

    def _close(self, handle: Any) -> None:
        close = getattr(handle, "close", None)
        if close is not None:
            close()

    @abstractmethod
    def _read_meta(self, handle: Any) -> SlideMeta:
        """Metadata of the file's own levels (computed levels are added by the base class)."""

    @abstractmethod
    def _read_level(self, handle: Any, box: Box, level: int, bands: list[int]) -> np.ndarray:
        """(h, w, len(bands)) native-dtype pixels of a box inside native level ``level``."""

    def _read_associated(self, handle: Any, name: str) -> np.ndarray:
        raise KeyError(name)

    # ----------------------------------------------------------------- handles
    def _handle(self) -> Any:
        slot = getattr(self._local, "slot", None)
        if slot is None or slot[0] != self._generation:
            handle = self._open()
            with self._lock:
                self._handles.append(handle)
                self._local.slot = (self._generation, handle)
            return handle
        return slot[1]

    def _drop_handle(self) -> None:
        """Forget this thread's handle (OpenSlide's is dead after its first read error); the next read reopens."""
        slot = getattr(self._local, "slot", None)
        self._local.slot = None
        if slot is not None:
            with self._lock:
                if slot[1] in self._handles:
                    self._handles.remove(slot[1])
            try:
                self._close(slot[1])
            except Exception:  # a dead handle may fail to close; it is gone either way
                pass

    def close(self) -> None:
        """Close every thread's handle (call when no read is in flight); a later read reopens lazily."""
        with self._lock:
            handles, self._handles = self._handles, []
            self._generation += 1
        for h in handles:
            try:
                self._close(h)
            except Exception:
                pass

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        return (_reopen, (self.path, self._mpp_override, self.backend, self.options, self.meta.stretch))

    def __repr__(self) -> str:
        w, h = self.meta.dimensions
        return f"<{type(self).__name__} {self.path!r} {w}x{h} levels={self.meta.level_count}>"

    # ----------------------------------------------------------------- levels
    def _add_computed_levels(self, meta: SlideMeta) -> None:
        sw, sh = meta.level_dimensions[-1]
        dtype = np.dtype(meta.dtype)
        source_level = self._native - 1
        self._computed = ComputedLevels(
            lambda box, bands: self._read_native(box, source_level, bands),
            (sw, sh),
            self._native,
            meta.bands,
            dtype,
        )
        base_ds = meta.level_downsamples[-1]
        for w, h, f in self._computed.sizes:
            meta.level_dimensions.append((w, h))
            meta.level_downsamples.append(base_ds * f)
            self._level_tiles.append(None)
        meta.computed_levels = len(self._computed)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (0.1% tolerance)."""
        best = 0
        for i, d in enumerate(self.meta.level_downsamples):
            if d <= max(downsample, 1.0) * 1.001:
                best = i
        return best

    def level_tile_size(self, level: int) -> tuple[int, int] | None:
        """Native (width, height) of a tile or strip of ``level``; None for computed levels."""
        return self._level_tiles[level]

    # ----------------------------------------------------------------- reading
    def _check(self, box: Box, level: int) -> Box:
        if not isinstance(level, int | np.integer) or not 0 <= level < self.meta.level_count:
            raise RegionError(f"level {level} does not exist: {self.path} has levels 0 to {self.meta.level_count - 1}")
        if not isinstance(box, Box):
            box = Box.from_list(box)
        w, h = self.meta.level_dimensions[level]
        if box.w <= 0 or box.h <= 0:
            raise RegionError(f"empty region {box.to_list()} (x, y, width, height) at level {level}")
        if box.x < 0 or box.y < 0 or box.x1 > w or box.y1 > h:
            raise RegionError(
                f"region {box.to_list()} (x, y, width, height) lies outside level {level} of {self.path} ({w} x {h} px)"
            )
        return box

    def _check_bands(self, bands) -> list[int]:
        n = self.meta.bands
        if bands is None:
            return list(range(n))
        bands = [int(b) for b in ([bands] if isinstance(bands, int | np.integer) else bands)]
        bad = [b for b in bands if not 0 <= b < n]
        if bad or not bands:
            raise RegionError(f"bands {bands} do not exist: the image has {n} band(s) (0 to {n - 1})")
        return bands

    def _read_native(self, box: Box, level: int, bands: list[int]) -> np.ndarray:
        return self._read_level(self._handle(), box, level, bands)

    def read(self, box: Box, level: int = 0, *, bands=None) -> np.ndarray:
        """(h, w, c) pixels of ``box`` (in that level's pixels) in the native dtype; c = len(bands) or all bands.

        Raises RegionError for a box outside the level and DamagedTileError when the decoder reports corrupt data.
        """
        box = self._check(box, level)
        bands = self._check_bands(bands)
        if level < self._native:
            out = self._read_native(box, level, bands)
        else:
            out = self._computed.read(box, level, bands)
        return out

    def read_region(self, box0: Box, level: int, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """The level-0 box ``box0`` read from ``level`` (rounded outwards), optionally resized to (width, height)."""
        box0 = self._check(box0, 0)
        ds = self.meta.level_downsamples[level]
        w, h = self.meta.level_dimensions[level]
        lb = box0.scale(ds)
        lb = Box(lb.x, lb.y, min(lb.x1, w) - lb.x, min(lb.y1, h) - lb.y)
        data = self.read(lb, level)
        if out_size is not None and (data.shape[1], data.shape[0]) != tuple(out_size):
            data = resize_image(data, out_size)
        return data

    # ----------------------------------------------------------------- RGB
    def _alpha_valid(self, data: np.ndarray, bands: list[int]) -> np.ndarray | None:
        return None

    def ensure_stretch(self) -> list[tuple[float, float]] | None:
        """The image's one display stretch (None for 8-bit RGB), computed once from the coarsest level."""
        meta = self.meta
        if meta.is_rgb and meta.dtype == "uint8":
            return None
        if meta.stretch is not None:
            return meta.stretch
        with self._stretch_lock:
            if meta.stretch is None:
                level = meta.level_count - 1
                w, h = meta.level_dimensions[level]
                bands = list(meta.rgb_bands)
                data = self.read(Box(0, 0, w, h), level, bands=bands).astype(np.float64)
                valid = self.valid_mask(Box(0, 0, w, h), level)
                stretch = []
                for i in range(len(bands)):
                    v = data[..., i][valid] if valid is not None else data[..., i].ravel()
                    v = v[np.isfinite(v)]
                    if v.size == 0:
                        lo, hi = 0.0, 1.0
                    else:
                        lo, hi = (float(x) for x in np.percentile(v, STRETCH_PERCENTILES))
                    if hi <= lo:
                        hi = lo + 1.0
                    stretch.append((lo, hi))
                meta.stretch = stretch
        return meta.stretch

    def valid_mask(self, box: Box, level: int = 0) -> np.ndarray | None:
        """True where the image has data (not nodata in every band, alpha > 0); None when everything is valid."""
        meta = self.meta
        if meta.nodata is None and meta.alpha_band is None:
            return None
        bands = list(range(meta.bands))
        data = self.read(box, level, bands=bands)
        valid = np.ones(data.shape[:2], bool)
        if meta.alpha_band is not None:
            valid &= data[..., meta.alpha_band] > 0
            bands = [b for b in bands if b != meta.alpha_band]
        if meta.nodata is not None and not math.isnan(meta.nodata):
            valid &= ~np.all(data[..., bands] == meta.nodata, axis=-1)
        elif meta.nodata is not None:
            valid &= ~np.all(np.isnan(data[..., bands]), axis=-1)
        return valid

    def to_rgb(self, data: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 from pixels of the display bands (``meta.rgb_bands``) as ``read`` returns them."""
        meta = self.meta
        if not (meta.is_rgb and data.dtype == np.uint8):
            stretch = self.ensure_stretch() or [(0.0, 255.0)] * data.shape[-1]
            out = np.empty(data.shape, np.uint8)
            for i in range(data.shape[-1]):
                lo, hi = stretch[i]
                band = (data[..., i].astype(np.float32) - lo) * (255.0 / (hi - lo))
                np.clip(band + 0.5, 0, 255, out=band)
                out[..., i] = np.nan_to_num(band)
            data = out
        if data.shape[-1] == 1:
            return np.repeat(data, 3, axis=-1)
        if data.shape[-1] == 2:
            return np.concatenate([data, np.zeros_like(data[..., :1])], axis=-1)
        return np.ascontiguousarray(data[..., :3])

    def read_rgb(self, box: Box, level: int = 0) -> np.ndarray:
        """(h, w, 3) uint8 for display and RGB models; alpha dropped; 16-bit and multi-band data stretched once."""
        return self.to_rgb(self.read(box, level, bands=list(self.meta.rgb_bands)))

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """RGB uint8 overview whose longer side is at most ``max_size``, read from the best level."""
        w0, h0 = self.meta.dimensions
        ds = max(w0, h0) / max_size
        level = self.best_level_for_downsample(max(ds, 1.0))
        w, h = self.meta.level_dimensions[level]
        rgb = self.read_rgb(Box(0, 0, w, h), level)
        scale = max(w, h) / max_size
        if scale > 1:
            rgb = resize_image(rgb, (max(1, round(w / scale)), max(1, round(h / scale))))
        return rgb

    # ----------------------------------------------------------------- associated images, dask
    def associated_image(self, name: str) -> np.ndarray:
        """A label, macro or thumbnail image stored beside the pyramid, as (h, w, c) uint8."""
        if name not in self.meta.associated:
            raise KeyError(f"{self.path} has no associated image {name!r} (it has: {self.meta.associated})")
        return self._read_associated(self._handle(), name)

    def dask_chunks(self, level: int) -> tuple[int, int]:
        """(width, height) of dask chunks: the smallest multiple of the native tile that is >= 512 px per side."""
        w, h = self.meta.level_dimensions[level]
        tile = self._level_tiles[level]
        tw, th = tile if tile else (DASK_MIN_CHUNK, DASK_MIN_CHUNK)
        cw = min(w, tw * math.ceil(DASK_MIN_CHUNK / tw))
        ch = min(h, th * math.ceil(DASK_MIN_CHUNK / th))
        return cw, ch

    def _dask_block(self, level: int, x: int, y: int, w: int, h: int, bands: list[int]) -> np.ndarray:
        return self.read(Box(x, y, w, h), level, bands=bands)

    def level_as_dask(self, level: int = 0, *, bands=None):
        """A lazy (h, w, c) dask array of a level; each chunk is one ``read`` (in the calling worker's thread)."""
        import dask.array as da
        from dask.base import tokenize

        self._check(Box(0, 0, 1, 1), level)
        bands = self._check_bands(bands)
        w, h = self.meta.level_dimensions[level]
        cw, ch = self.dask_chunks(level)
        xs, ys = list(range(0, w, cw)), list(range(0, h, ch))
        col_sizes = tuple(min(cw, w - x) for x in xs)
        row_sizes = tuple(min(ch, h - y) for y in ys)
        name = "vimscope-read-" + tokenize(self.path, self.meta.file_size, self._mpp_override, level, bands)
        dsk = {
            (name, i, j, 0): (self._dask_block, level, x, y, col_sizes[j], row_sizes[i], bands)
            for i, y in enumerate(ys)
            for j, x in enumerate(xs)
        }
        dtype = np.dtype(self.meta.dtype)
        return da.Array(dsk, name, chunks=(row_sizes, col_sizes, (len(bands),)), dtype=dtype)


def resize_image(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (h, w, c) to (width, height): area averaging when shrinking, bilinear when growing."""
    w, h = size
    if data.dtype == np.uint8 and data.shape[2] in (1, 3, 4):
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(data[..., 0] if data.shape[2] == 1 else data))
        shrinking = w < data.shape[1] and h < data.shape[0]
        out = np.asarray(img.resize((w, h), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR))
        return out.reshape(h, w, data.shape[2])
    from skimage.transform import resize

    shrinking = w < data.shape[1] or h < data.shape[0]
    out = resize(data, (h, w, data.shape[2]), order=1, preserve_range=True, anti_aliasing=shrinking)
    if data.dtype.kind in "ui":
        info = np.iinfo(data.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(data.dtype)
