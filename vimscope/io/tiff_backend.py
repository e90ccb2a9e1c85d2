"""tifffile through its zarr store: OME-TIFF, generic tiled/pyramidal TIFF, GeoTIFF/COG, QPTIFF, BigTIFF, plain TIFF.

Also reads SVS and NDPI when asked (``backend="tifffile"``). Pixels are decoded through tifffile's zarr store
(which handles strips, tiles, planar layouts and channel-per-page series); before a JPEG tile is decoded its
raw bytes are checked once with ``io.jpeg.check`` because imagecodecs hides libjpeg's corrupt-data warnings.
A COG's internal mask pages are a separate series here, never mistaken for pyramid levels (OpenSlide's mistake).
"""

from __future__ import annotations

import lzma
import math
import zlib
from pathlib import Path

import numpy as np

from vimscope.errors import CorruptSlideError, DamagedTileError
from vimscope.io import tiffmeta
from vimscope.io.base import SlideReader
from vimscope.io.detect import quiet_tifffile
from vimscope.io.jpeg.tilecheck import TileChecker
from vimscope.io.meta import SlideMeta, choose_rgb_bands
from vimscope.types import Box

# what codecs raise for corrupt data (imagecodecs and numcodecs: RuntimeError/ValueError; the stdlib its own)
DECODE_ERRORS = (RuntimeError, ValueError, OSError, EOFError, IndexError, zlib.error, lzma.LZMAError)
ASSOCIATED_SERIES = {"thumbnail", "label", "macro", "overview"}


class _Handle:
    """One thread's open TiffFile, its series and one zarr array per level."""

    def __init__(self, path: str, series: int):
        import tifffile
        import zarr

        with quiet_tifffile():
            self.tif = tifffile.TiffFile(path)
            if series >= len(self.tif.series):
                self.tif.close()
                raise CorruptSlideError(f"{path}: no image series {series} (it has {len(self.tif.series)})")
            self.series = self.tif.series[series]
            group = zarr.open(self.tif.aszarr(series=series, multiscales=True), mode="r")
            self.arrays = [group[str(i)] for i in range(len(self.series.levels))]

    def close(self) -> None:
        self.tif.close()


class TiffReader(SlideReader):
    backend = "tifffile"

    def __init__(self, path, *, mpp=None, source=None, series: int = 0, **options):
        self._series_index = int(series)
        self._checker = TileChecker(str(source if source is not None else path), str(path))
        super().__init__(path, mpp=mpp, source=source, series=series, **options)

    def _open(self) -> _Handle:
        return _Handle(self.source, self._series_index)

    # ----------------------------------------------------------------- metadata
    def _read_meta(self, handle: _Handle) -> SlideMeta:
        tif, series = handle.tif, handle.series
        axes = series.axes
        self._axes = axes
        with quiet_tifffile():
            page = series.keyframe
            dims, tiles = [], []
            for index, lvl in enumerate(series.levels):
                shape = dict(zip(lvl.axes, lvl.shape))
                dims.append((int(shape["X"]), int(shape["Y"])))
                kf = lvl.keyframe
                self._check_page(kf, f"a {'tile' if kf.is_tiled else 'strip'} of level {index}")
                if kf.is_tiled:
                    tiles.append((int(kf.tilewidth), int(kf.tilelength)))
                else:
                    tiles.append((int(kf.imagewidth), int(min(kf.rowsperstrip or kf.imagelength, kf.imagelength))))
            self._native_tile_sizes = tiles
            shape0 = dict(zip(axes, series.shape))
            bands = math.prod(int(n) for a, n in shape0.items() if a in "CS")
            w0, h0 = dims[0]
            downsamples = [((w0 / w) + (h0 / h)) / 2 for w, h in dims]
            meta = SlideMeta(
                path=self.path,
                backend=self.backend,
                level_dimensions=dims,
                level_downsamples=downsamples,
                bands=bands,
                dtype=str(series.dtype),
                tile_size=tiles[0],
                file_size=Path(self.source).stat().st_size,
            )
            self._vendor_meta(meta, tif, page)
            meta.is_rgb = int(page.photometric) in (2, 6) and meta.dtype == "uint8" and bands >= 3
            extras = tuple(int(e) for e in (page.extrasamples or ()))
            if axes.count("C") == 0 and any(e in (1, 2) for e in extras):
                meta.alpha_band = int(page.samplesperpixel) - len(extras) + next(i for i, e in enumerate(extras) if e)
                meta.has_alpha = True
            meta.rgb_bands = choose_rgb_bands(meta.band_names, bands, meta.is_rgb, meta.alpha_band)
        return meta

    def _vendor_meta(self, meta: SlideMeta, tif, page) -> None:
        """Fill vendor, pixel size, georeference, bands names and associated images by TIFF flavour."""
        info: dict = {}
        if page.is_geotiff:
            meta.vendor = "geotiff"
            info.update(tiffmeta.geotiff_info(tif))
        gdal = tiffmeta.gdal_info(page)
        self._associated_pages: dict[str, tuple[str, int]] = {}
        if tif.is_ome:
            meta.vendor = "ome-tiff"
            info.update(tiffmeta.ome_info(tif.ome_metadata or "", self._series_index))
        elif page.is_qpi:
            meta.vendor = "qptiff"
            qpi = tiffmeta.qpi_info(tif.pages)
            for name, index in qpi.pop("associated_pages", {}).items():
                self._associated_pages[name] = ("page", index)
            info = {**qpi, **{k: v for k, v in info.items() if k != "mpp"}}
            if tiffmeta.resolution_mpp(page):
                info["mpp"] = tiffmeta.resolution_mpp(page)  # the calibrated value; the XML has the nominal one
        elif page.is_svs:
            meta.vendor = "aperio"
            info.update(tiffmeta.svs_info(page.description))
        elif page.is_ndpi:
            meta.vendor = "hamamatsu"
            info.setdefault("mpp", tiffmeta.resolution_mpp(page))
        else:
            meta.vendor = meta.vendor or "tiff"
            if "mpp" not in info:
                info["mpp"] = tiffmeta.resolution_mpp(page)
        for index, s in enumerate(tif.series):
            name = (s.name or "").lower()
            if index != self._series_index and name in ASSOCIATED_SERIES:
                self._associated_pages.setdefault(name, ("series", index))
        meta.mpp = info.get("mpp")
        meta.objective_power = info.get("objective_power")
        meta.transform = info.get("transform")
        meta.crs = info.get("crs")
        meta.crs_name = info.get("crs_name")
        meta.crs_units = info.get("crs_units")
        meta.nodata = gdal.get("nodata")
        names = info.get("band_names")
        by_index = gdal.get("band_names_by_index")
        if not names and by_index and len(by_index) == meta.bands:
            names = [by_index[i] for i in range(meta.bands)]
        meta.band_names = names if names and len(names) == meta.bands else None
        meta.associated = sorted(self._associated_pages)

    def _check_page(self, page, what: str) -> None:
        """The decoded size of one segment (tile or strip) of ``page``, from its tags, against the limit."""
        itemsize = page.dtype.itemsize if page.dtype is not None else max(1, int(page.bitspersample) // 8)
        self._check_decoded(what, page.chunks, itemsize)

    def _read_associated(self, handle: _Handle, name: str) -> np.ndarray:
        kind, index = self._associated_pages[name]
        with quiet_tifffile():
            whole = handle.tif.series[index] if kind == "series" else handle.tif.pages[index]
            self._check_decoded(f"the {name} image", whole.shape, np.dtype(whole.dtype).itemsize)
            data = handle.tif.series[index].asarray() if kind == "series" else handle.tif.pages[index].asarray()
        return data[..., None] if data.ndim == 2 else data

    # ----------------------------------------------------------------- pixels
    def _read_level(self, handle: _Handle, box: Box, level: int, bands: list[int]) -> np.ndarray:
        self._checker.check(handle.tif, handle.series, box, level, bands)
        axes = self._axes
        band_axes = [i for i, a in enumerate(axes) if a in "CS"]
        key: list = []
        for a in axes:
            key.append(
                slice(box.y, box.y1)
                if a == "Y"
                else slice(box.x, box.x1)
                if a == "X"
                else slice(None)
                if a in "CS"
                else 0
            )
        select_here = len(band_axes) == 1 and bands != list(range(self.meta.bands))
        if select_here:
            key[band_axes[0]] = bands
        arr = handle.arrays[level]
        try:
            data = arr.get_orthogonal_selection(tuple(key)) if select_here else arr[tuple(key)]
        except DECODE_ERRORS as e:
            reason = f"{type(e).__name__}: {e}"
            raise DamagedTileError(
                f"{self.path}: damaged data in {box.to_list()} at level {level} ({reason})", box, level, reason=reason
            ) from e
        kept = [a for a in axes if a in "YXCS"]
        order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a in "CS"]
        data = np.asarray(data).transpose(order).reshape(box.h, box.w, -1)
        if not select_here and bands != list(range(data.shape[-1])):
            data = data[..., bands]
        return np.ascontiguousarray(data)
