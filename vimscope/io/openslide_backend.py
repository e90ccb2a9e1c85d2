"""OpenSlide: Aperio SVS, Hamamatsu NDPI/VMS, MIRAX, Leica SCN, Ventana BIF, Philips TIFF, DICOM.

An OpenSlide handle is dead after its first read error (measured on a corrupted SVS: every later read fails),
so a read error closes this thread's handle, reports the box as damaged, and the next read reopens.
OpenSlide turns libjpeg's corrupt-data errors into read errors but lets some damage through (22 of 30 corrupted
SVS tiles flagged in tests/io/test_damage.py); for Aperio SVS, whose levels are the TIFF's own pages, the raw
tiles are also checked with ``io.jpeg.check`` before OpenSlide decodes them (29 of 30 flagged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vimscope.errors import CorruptSlideError, DamagedTileError, UnsupportedFormatError
from vimscope.io.base import SlideReader
from vimscope.io.jpeg.tilecheck import TileChecker
from vimscope.io.meta import SlideMeta
from vimscope.types import Box


def _float(props, key) -> float | None:
    try:
        value = float(props[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if value > 0 else None


class _Handle:
    """One thread's OpenSlide handle, and (Aperio SVS) a TiffFile to check raw tiles before decoding."""

    def __init__(self, path: str):
        import openslide

        self.slide = openslide.OpenSlide(path)
        self.path = path
        self._tif = None

    def tiff(self):
        if self._tif is None:
            import tifffile

            self._tif = tifffile.TiffFile(self.path)
        return self._tif

    def close(self) -> None:
        self.slide.close()
        if self._tif is not None:
            self._tif.close()


class OpenSlideReader(SlideReader):
    backend = "openslide"

    def _open(self) -> _Handle:
        import openslide

        try:
            return _Handle(self.source)
        except openslide.OpenSlideUnsupportedFormatError as e:
            raise UnsupportedFormatError(f"{self.path}: OpenSlide does not support this file") from e
        except openslide.OpenSlideError as e:
            raise CorruptSlideError(f"{self.path}: OpenSlide cannot open it ({e})") from e

    def _tile_checker(self, handle: _Handle) -> TileChecker | None:
        """A raw-tile checker when OpenSlide's levels are exactly the TIFF's pages (Aperio SVS), else None."""
        if handle.slide.properties.get("openslide.vendor") != "aperio":
            return None
        from vimscope.io.detect import quiet_tifffile

        try:
            with quiet_tifffile():
                levels = handle.tiff().series[0].levels
                dims = [(int(lv.shape[1]), int(lv.shape[0])) for lv in levels]
        except Exception:  # not parseable by tifffile: OpenSlide alone decides
            return None
        if dims != [tuple(d) for d in handle.slide.level_dimensions]:
            return None
        return TileChecker(self.source, self.path)

    def _read_meta(self, handle: _Handle) -> SlideMeta:
        self._checker = self._tile_checker(handle)
        slide = handle.slide
        props = slide.properties
        mpp_x, mpp_y = _float(props, "openslide.mpp-x"), _float(props, "openslide.mpp-y")
        mpps = [m for m in (mpp_x, mpp_y) if m]
        tiles = []
        for level in range(slide.level_count):
            tw = props.get(f"openslide.level[{level}].tile-width")
            th = props.get(f"openslide.level[{level}].tile-height")
            tiles.append((int(tw), int(th)) if tw and th else None)
        self._native_tile_sizes = tiles
        for level, tile in enumerate(tiles):
            if tile is not None:
                self._check_decoded(f"a tile of level {level}", (tile[1], tile[0], 4), 1)
        bg = props.get("openslide.background-color") or "FFFFFF"
        self._background = np.array([int(bg[i : i + 2], 16) for i in (0, 2, 4)], np.uint16)

        return SlideMeta(
            path=self.path,
            backend=self.backend,
            vendor=props.get("openslide.vendor"),
            level_dimensions=[tuple(map(int, d)) for d in slide.level_dimensions],
            level_downsamples=[float(d) for d in slide.level_downsamples],
            mpp=sum(mpps) / len(mpps) if mpps else None,
            objective_power=_float(props, "openslide.objective-power"),
            bands=3,
            band_names=["red", "green", "blue"],
            dtype="uint8",
            tile_size=tiles[0],
            associated=sorted(slide.associated_images),
            file_size=Path(self.source).stat().st_size,
        )

    def _composite(self, rgba: np.ndarray) -> np.ndarray:
        """OpenSlide returns premultiplied RGBA (alpha 0 where the slide has no data): put it on the background."""
        rgb = rgba[..., :3]
        alpha = rgba[..., 3]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgb)
        a = alpha[..., None].astype(np.uint16)
        out = rgb.astype(np.uint16) + ((255 - a) * self._background + 127) // 255
        return np.minimum(out, 255).astype(np.uint8)

    def _read_level(self, handle: _Handle, box: Box, level: int, bands: list[int]) -> np.ndarray:
        import openslide

        if self._checker is not None:
            self._checker.check(handle.tiff(), handle.tiff().series[0], box, level, [0, 1, 2])
        ds = self.meta.level_downsamples[level] if hasattr(self, "meta") else 1.0
        location = (round(box.x * ds), round(box.y * ds))
        try:
            region = handle.slide.read_region(location, level, (box.w, box.h))
        except openslide.OpenSlideError as e:
            self._drop_handle()
            raise DamagedTileError(
                f"{self.path}: damaged data in {box.to_list()} at level {level} ({e})", box, level, reason=str(e)
            ) from e
        rgb = self._composite(np.asarray(region))
        return rgb if bands == [0, 1, 2] else np.ascontiguousarray(rgb[..., bands])

    def _read_associated(self, handle: _Handle, name: str) -> np.ndarray:
        props = handle.slide.properties
        w = props.get(f"openslide.associated.{name}.width")
        h = props.get(f"openslide.associated.{name}.height")
        if w and h:
            self._check_decoded(f"the {name} image", (int(h), int(w), 4), 1)
        return self._composite(np.asarray(handle.slide.associated_images[name].convert("RGBA")))
