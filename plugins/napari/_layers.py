"""Layer data (napari ``LayerData`` tuples) for a slide: a lazy multiscale image in physical units.

Shared by the reader, the sample data and the widget, so a slide looks the same however it was opened.
Every layer carries ``metadata["vimscope"]`` (slide path, pixel size, CRS): the widget and the writers use it to
map napari's world coordinates back to level-0 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, dict, str]

# pyproj unit names -> pint (what napari's ``units`` understands)
_MAP_UNITS = {"metre": "m", "meter": "m", "degree": "degree", "foot": "ft", "US survey foot": "survey_foot"}


def crs_unit(crs: str | None) -> str:
    """The unit of a CRS's axes as pint spells it ("m", "degree"...), "pixel" when unknown."""
    if not crs:
        return "pixel"
    try:
        import pyproj

        name = pyproj.CRS.from_user_input(crs).axis_info[0].unit_name
    except Exception:
        return "pixel"
    return _MAP_UNITS.get(name, "pixel")


def physical_scale(meta) -> tuple[float, str]:
    """Level-0 pixel size and its unit: µm for slides, CRS units for georeferenced rasters, 1 pixel without."""
    if meta.mpp is None or not np.isfinite(meta.mpp) or meta.mpp <= 0:
        return 1.0, "pixel"
    if getattr(meta, "georeferenced", False) or meta.crs:
        return float(meta.mpp), crs_unit(meta.crs)
    return float(meta.mpp), "um"


def slide_info(reader) -> dict:
    """What faces need to map world coordinates back to the slide (kept small and JSON-friendly)."""
    meta = reader.meta
    size, unit = physical_scale(meta)
    return {
        "path": str(meta.path),
        "mpp": meta.mpp,
        "pixel_size": size,
        "unit": unit,
        "crs": meta.crs,
        "transform": list(meta.transform) if meta.transform else None,
        "dimensions": list(meta.dimensions),
        "backend": meta.backend,
    }


def _levels(reader) -> list:
    """Every level as a lazy dask array, finest first, keeping only strictly shrinking levels (napari needs that)."""
    arrays = []
    for level in range(reader.meta.level_count):
        arr = reader.level_as_dask(level)
        if arrays and (arr.shape[0] >= arrays[-1].shape[0] and arr.shape[1] >= arrays[-1].shape[1]):
            continue
        arrays.append(arr)
    return arrays


def slide_layers(reader, name: str | None = None) -> list[LayerData]:
    """A multiscale image layer (one per band for non-RGB multi-band rasters) of lazy dask arrays."""
    meta = reader.meta
    size, unit = physical_scale(meta)
    levels = _levels(reader)
    name = name or _display_name(meta.path)
    kwargs: dict[str, Any] = {
        "name": name,
        "multiscale": True,
        "scale": (size, size),
        "units": (unit, unit),
        "metadata": {"vimscope": slide_info(reader)},
    }
    bands = levels[0].shape[-1] if levels[0].ndim == 3 else 1
    looks_rgb = str(levels[0].dtype) == "uint8" and (bands == 3 or (bands == 4 and meta.has_alpha))
    is_rgb = levels[0].ndim == 3 and looks_rgb and bool(getattr(meta, "is_rgb", True))
    if is_rgb or levels[0].ndim == 2:
        kwargs["rgb"] = is_rgb
        if not is_rgb and meta.stretch:
            kwargs["contrast_limits"] = [float(v) for v in meta.stretch[0]]
        return [(levels, kwargs, "image")]
    if bands == 1:
        if meta.stretch:
            kwargs["contrast_limits"] = [float(v) for v in meta.stretch[0]]
        return [([a[..., 0] for a in levels], {**kwargs, "rgb": False}, "image")]
    # Multi-band rasters (fluorescence, multispectral): one additive layer per band, named after the band.
    band_names = list(meta.band_names or [])[:bands]
    band_names += [f"band {i + 1}" for i in range(len(band_names), bands)]
    colormaps = ["magenta", "green"] if bands == 2 else ["cyan", "magenta", "yellow", "blue", "green", "red"]
    layers = []
    for i, band in enumerate(band_names):
        band_kwargs = {
            **kwargs,
            "name": f"{name} [{band}]",
            "rgb": False,
            "colormap": colormaps[i % len(colormaps)],
            "blending": "translucent_no_depth" if i == 0 else "additive",
        }
        if meta.stretch and len(meta.stretch) == bands:
            band_kwargs["contrast_limits"] = [float(v) for v in meta.stretch[i]]
        layers.append(([a[..., i] for a in levels], band_kwargs, "image"))
    return layers


def _display_name(path: str | Path) -> str:
    name = Path(str(path)).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name
