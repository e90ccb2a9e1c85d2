"""OME-Zarr (OME-NGFF 0.4 in Zarr v2, 0.5 in Zarr v3): a multiscale image group, read with zarr-python.

Axes other than y, x and c (t, z) are read at index 0. The pixel size comes from the first dataset's scale
transform when the x/y unit is a length; the omero ``window`` of each shown channel, when present, is the
display stretch (it is what the file's author chose).
"""

from __future__ import annotations

import lzma
import zlib
from pathlib import Path

import numpy as np

from vimscope.errors import CorruptSlideError, DamagedTileError
from vimscope.io.base import SlideReader
from vimscope.io.codecs import register_jpeg_codec
from vimscope.io.meta import SlideMeta, choose_rgb_bands
from vimscope.types import Box

UNITS_TO_UM = {
    "angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "micron": 1.0, "millimeter": 1e3,
    "centimeter": 1e4, "meter": 1e6, "µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3,
}  # fmt: skip
# what codecs raise for corrupt data (imagecodecs and numcodecs: RuntimeError/ValueError; the stdlib its own)
DECODE_ERRORS = (RuntimeError, ValueError, OSError, EOFError, IndexError, zlib.error, lzma.LZMAError)


def _multiscales(attrs: dict) -> dict:
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not ms:
        raise CorruptSlideError("OME-Zarr group without multiscales metadata")
    return ms[0]


def _omero(attrs: dict) -> dict:
    return attrs.get("omero") or attrs.get("ome", {}).get("omero") or {}


def _scale(transforms: list[dict] | None, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for t in transforms or []:
        if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    return scale


class _Handle:
    def __init__(self, path: str):
        import zarr

        register_jpeg_codec()  # a JPEG image copy (opt-in, or written by vimscope 0.1) names imagecodecs' codec
        try:
            self.group = zarr.open_group(path, mode="r")
            self.attrs = self.group.attrs.asdict()
            self.ms = _multiscales(self.attrs)
            self.arrays = [self.group[d["path"]] for d in self.ms["datasets"]]
        except (KeyError, ValueError, OSError) as e:
            raise CorruptSlideError(f"{path}: unreadable OME-Zarr ({e})") from e

    def close(self) -> None:
        pass


class OmeZarrReader(SlideReader):
    backend = "zarr"

    def _open(self) -> _Handle:
        return _Handle(self.source)

    def _read_meta(self, handle: _Handle) -> SlideMeta:
        ms, arrays = handle.ms, handle.arrays
        axes = [a if isinstance(a, str) else a.get("name") for a in ms.get("axes", ["t", "c", "z", "y", "x"])]
        units = {a.get("name"): a.get("unit") for a in ms.get("axes", []) if isinstance(a, dict)}
        self._axes = axes
        if "x" not in axes or "y" not in axes:
            raise CorruptSlideError(f"{self.path}: OME-Zarr without x and y axes ({axes})")
        ix, iy = axes.index("x"), axes.index("y")
        dims = [(int(a.shape[ix]), int(a.shape[iy])) for a in arrays]
        w0, h0 = dims[0]
        bands = int(arrays[0].shape[axes.index("c")]) if "c" in axes else 1
        global_scale = _scale(ms.get("coordinateTransformations"), len(axes))
        scale0 = _scale(ms["datasets"][0].get("coordinateTransformations"), len(axes))
        mpp = None
        unit = units.get("x")
        if unit in UNITS_TO_UM:
            sx = scale0[ix] * global_scale[ix] * UNITS_TO_UM[unit]
            sy = scale0[iy] * global_scale[iy] * UNITS_TO_UM.get(units.get("y"), UNITS_TO_UM[unit])
            mpp = (sx + sy) / 2 if sx > 0 and sy > 0 else None
        channels = _omero(handle.attrs).get("channels") or []
        names = [str(c.get("label")) for c in channels if c.get("label") is not None]
        dtype = str(arrays[0].dtype)
        is_rgb = dtype == "uint8" and bands in (3, 4)
        chunks = arrays[0].chunks
        meta = SlideMeta(
            path=self.path,
            backend=self.backend,
            vendor="ome-zarr",
            level_dimensions=dims,
            level_downsamples=[((w0 / w) + (h0 / h)) / 2 for w, h in dims],
            mpp=mpp,
            bands=bands,
            band_names=names if len(names) == bands else None,
            dtype=dtype,
            tile_size=(int(chunks[ix]), int(chunks[iy])),
            is_rgb=is_rgb,
            file_size=sum(f.stat().st_size for f in Path(self.source).rglob("*") if f.is_file()),
        )
        self._native_tile_sizes = [(int(a.chunks[ix]), int(a.chunks[iy])) for a in arrays]
        for index, a in enumerate(arrays):
            self._check_decoded(f"a chunk of level {index}", a.chunks, np.dtype(a.dtype).itemsize)
        meta.rgb_bands = choose_rgb_bands(meta.band_names, bands, is_rgb, None)
        windows = [channels[b].get("window") if b < len(channels) else None for b in meta.rgb_bands]
        if not is_rgb and windows and all(w and "start" in w and "end" in w for w in windows):
            meta.stretch = [(float(w["start"]), float(w["end"])) for w in windows]
            meta.stretch = [(lo, hi if hi > lo else lo + 1.0) for lo, hi in meta.stretch]
        return meta

    def _read_level(self, handle: _Handle, box: Box, level: int, bands: list[int]) -> np.ndarray:
        axes = self._axes
        key: list = []
        for a in axes:
            if a == "y":
                key.append(slice(box.y, box.y1))
            elif a == "x":
                key.append(slice(box.x, box.x1))
            elif a == "c":
                key.append(bands)
            else:
                key.append(0)
        try:
            data = handle.arrays[level].get_orthogonal_selection(tuple(key))
        except DECODE_ERRORS as e:
            reason = f"{type(e).__name__}: {e}"
            raise DamagedTileError(
                f"{self.path}: damaged chunk in {box.to_list()} at level {level} ({reason})", box, level, reason=reason
            ) from e
        kept = [a for a in axes if a in ("y", "x", "c")]
        order = [kept.index("y"), kept.index("x")] + ([kept.index("c")] if "c" in kept else [])
        data = np.asarray(data).transpose(order)
        return np.ascontiguousarray(data.reshape(box.h, box.w, len(bands)))
