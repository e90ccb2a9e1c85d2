"""The one reader interface every backend implements, and what they share.

A backend implements five hooks (``_open``, ``_close``, ``_read_meta``, ``_read_level``, optionally
``_read_associated``); this base class adds box checks, computed overview levels, RGB conversion with one
stretch per image, dask arrays, per-thread handles and pickling by path.

Damage: ``read`` raises DamagedTileError when a tile of the box is damaged; inside ``collect_damage`` it reads
around the damaged native tiles instead (``io.damage``), fills their pixels and lists them.

Thread safety: each thread gets its own handle (``threading.local``); libraries' handles are never shared.
Pickling: a reader pickles as (its class, path, mpp override, source, options) and the class reopens the file on
the other side; no file handle crosses a process boundary.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from vimscope.errors import ConfigError, CorruptSlideError, DamagedTileError, RegionError
from vimscope.io.damage import DamagedArea, DamageLog, level0_box, salvage
from vimscope.io.detect import detect
from vimscope.io.limits import check_decoded, max_decoded_bytes
from vimscope.io.meta import SlideMeta
from vimscope.io.pyramid import ComputedLevels
from vimscope.io.resize import resize_image
from vimscope.types import Box

DASK_MIN_CHUNK = 512  # dask chunks: the smallest multiple of the native tile that is at least this
STRETCH_PERCENTILES = (0.5, 99.5)
log = logging.getLogger("vimscope.io")


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
        self.decode_limit = max_decoded_bytes(options.get("max_decoded_mb"))  # bytes one tile may decode to
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

    def _check_decoded(self, what: str, shape, itemsize: float) -> None:
        """Refuse (DecodeLimitError) a piece of the file that would decode to more than ``decode_limit`` bytes."""
        check_decoded(self.path, what, shape, itemsize, self.decode_limit)

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
        return (type(self)._reopen, (self.path, self._mpp_override, self.source, self.options, self.meta.stretch))

    @classmethod
    def _reopen(cls, path: str, mpp: float | None, source: str, options: dict, stretch) -> SlideReader:
        """The other side of pickling: the same backend on the same file again, failing as ``open_slide`` does
        (the class itself reopens, so this module needs no dispatch over the backends that subclass it)."""
        found = detect(path)  # a file gone or emptied since it was opened: the same one-line error
        try:
            reader = cls(path, mpp=mpp, source=source, **options)
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise CorruptSlideError(f"{path}: cannot be read as {found.vendor or cls.backend} ({e})") from e
        if stretch is not None and reader.meta.stretch is None:
            reader.meta.stretch = [tuple(s) for s in stretch]
        return reader

    def __repr__(self) -> str:
        w, h = self.meta.dimensions
        return f"<{type(self).__name__} {self.path!r} {w}x{h} levels={self.meta.level_count}>"

    # ----------------------------------------------------------------- levels
    def _add_computed_levels(self, meta: SlideMeta) -> None:
        sw, sh = meta.level_dimensions[-1]
        dtype = np.dtype(meta.dtype)
        source_level = self._native - 1
        self._computed = ComputedLevels(
            lambda box, bands: self._salvage_native(box, source_level, bands, 0),
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

    def _salvage_native(self, box: Box, level: int, bands: list[int], fill) -> tuple[np.ndarray, list]:
        read = lambda b: self._read_native(b, level, bands)  # noqa: E731
        size, dtype = self.meta.level_dimensions[level], np.dtype(self.meta.dtype)
        return salvage(read, box, self._level_tiles[level], size, fill, dtype, len(bands))

    @contextmanager
    def collect_damage(self, fill=0, *, isolated: bool = False) -> Iterator[DamageLog]:
        """Within this block (this thread), reads never raise for damaged tiles: the pixels of each damaged native
        tile are ``fill``, the rest of the box is read from the intact tiles, and the yielded log lists each damaged
        tile once. Blocks nest; an inner block's tiles are also added to the outer one's log unless ``isolated``
        (reads of the whole image made on the way, such as the display stretch, are not the caller's)."""
        stack = getattr(self._local, "damage", None)
        if stack is None:
            stack = self._local.damage = []
        damage = DamageLog(fill)
        stack.append(damage)
        try:
            yield damage
        finally:
            stack.pop()
            if stack and not isolated:
                for area in damage.areas:
                    stack[-1].add(area)

    def _area(self, level: int, box: Box, reason: str) -> DamagedArea:
        ds = self.meta.level_downsamples[level]
        return DamagedArea(level, box, level0_box(box, ds, self.meta.dimensions), reason)

    def damaged_pixels(self, areas, box: Box, level: int) -> np.ndarray:
        """(h, w) bool of ``box`` at ``level``: True where a pixel overlaps one of the damaged ``areas``."""
        out = np.zeros((box.h, box.w), bool)
        ds = self.meta.level_downsamples[level]
        for a in areas:
            b = a.box0
            x0, y0 = math.floor(b.x / ds) - box.x, math.floor(b.y / ds) - box.y
            x1, y1 = math.ceil(b.x1 / ds) - box.x, math.ceil(b.y1 / ds) - box.y
            out[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
        return out

    def read(self, box: Box, level: int = 0, *, bands=None) -> np.ndarray:
        """(h, w, c) pixels of ``box`` (in that level's pixels) in the native dtype; c = len(bands) or all bands.

        Raises RegionError for a box outside the level and DamagedTileError when the decoder reports corrupt data
        (outside ``collect_damage``; inside, damaged native tiles are filled and logged).
        """
        box = self._check(box, level)
        bands = self._check_bands(bands)
        stack = getattr(self._local, "damage", None)
        damage = stack[-1] if stack else None
        if level < self._native:
            if damage is None:
                return self._read_native(box, level, bands)
            out, bad = self._salvage_native(box, level, bands, damage.fill)
            for cell, reason in bad:
                damage.add(self._area(level, cell, reason))
            return out
        out, bad = self._computed.read(box, level, bands)
        if not bad:
            return out
        source = self._native - 1
        areas = [self._area(source, cell, reason) for cell, reason in bad]
        if damage is None:
            raise DamagedTileError(
                f"{self.path}: {len(areas)} damaged tile(s) under {box.to_list()} at level {level}: {areas[0].reason}",
                box,
                level,
                tiles=[a.box for a in areas],
                reason=areas[0].reason,
            )
        out = np.array(out)
        fill = np.asarray(damage.fill).astype(out.dtype)
        for area in areas:
            damage.add(area)
            part = self._computed.footprint(area.box, level).intersect(box)
            if part is not None:
                out[part.y - box.y : part.y1 - box.y, part.x - box.x : part.x1 - box.x] = fill
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
                with self.collect_damage(isolated=True) as damage:
                    data = self.read(Box(0, 0, w, h), level, bands=bands).astype(np.float64)
                    valid = self.valid_mask(Box(0, 0, w, h), level)
                if damage:
                    good = ~self.damaged_pixels(damage.areas, Box(0, 0, w, h), level)
                    valid = good if valid is None else valid & good
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
        with self.collect_damage() as damage:  # an overview shows damaged tiles black, never fails for them
            rgb = self.read_rgb(Box(0, 0, w, h), level)
        if damage:
            log.warning("%s: %s; the overview shows them black", self.path, damage.summary())
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
