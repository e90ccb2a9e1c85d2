"""``summary.json``: what a run found and how it went, in physical units, written atomically.

Slides report areas in mm² (from µm/px), georeferenced rasters in m² (from map units/px, assumed metres);
without a pixel size areas stay in pixels. Versions are read from package metadata, never by importing
(this layer must not pull torch in).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from vimscope.writers.atomic import atomic_write_json

SCHEMA = 1
PACKAGES = ("vimscope", "numpy", "torch", "triton", "zarr", "tifffile", "imagecodecs", "openslide-python", "shapely")


def software_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def area_unit(unit: str | None) -> tuple[str, float]:
    """(reported unit, factor from squared pixel units): µm -> mm², m -> m², None -> px²."""
    if unit in ("µm", "um", "micrometer"):
        return "mm2", 1e-6
    if unit in ("m", "meter", "metre"):
        return "m2", 1.0
    return "px2", 1.0


def class_areas(
    class_pixels: Mapping[str, int] | Sequence[int], classes: Sequence, pixel_size: float | None, unit: str | None
) -> dict:
    """Per class: pixels, area in mm² (slides) or m² (maps), and share of all labelled pixels."""
    names = [c["name"] if isinstance(c, dict) else c.name for c in classes]
    if not isinstance(class_pixels, Mapping):
        class_pixels = {n: int(v) for n, v in zip(names, class_pixels)}
    reported, factor = area_unit(unit if pixel_size else None)
    px_area = (pixel_size or 1.0) ** 2 * factor
    total = max(1, sum(int(v) for v in class_pixels.values()))
    return {
        name: {
            "pixels": int(class_pixels.get(name, 0)),
            f"area_{reported}": int(class_pixels.get(name, 0)) * px_area,
            "fraction": int(class_pixels.get(name, 0)) / total,
        }
        for name in names
    }


def build_summary(
    *,
    slide: str,
    model: Mapping,
    classes: Sequence,
    class_pixels: Mapping[str, int] | Sequence[int],
    pixel_size: float | None,
    unit: str | None = "µm",
    tissue_pixels: int | None = None,
    object_counts: Mapping[str, int] | None = None,
    tiles: Mapping[str, int] | None = None,
    damaged_tiles: Sequence = (),
    timings: Mapping[str, float] | None = None,
    outputs: Mapping[str, str] | None = None,
    extra: Mapping | None = None,
) -> dict:
    """The summary as a dict with a fixed shape. ``pixel_size`` is the output grid's (µm or map units per px),
    ``model`` holds at least name, license and trained; ``damaged_tiles`` are boxes (level 0) or dicts."""
    reported, factor = area_unit(unit if pixel_size else None)
    damaged = [d.to_list() if hasattr(d, "to_list") else d for d in damaged_tiles]
    summary = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "slide": str(slide),
        "model": dict(model),
        "pixel_size": pixel_size,
        "unit": unit if pixel_size else "px",
        "class_areas": class_areas(class_pixels, classes, pixel_size, unit),
        "tissue": None
        if tissue_pixels is None
        else {"pixels": int(tissue_pixels), f"area_{reported}": int(tissue_pixels) * (pixel_size or 1.0) ** 2 * factor},
        "objects": {k: int(v) for k, v in (object_counts or {}).items()},
        "tiles": {k: int(v) for k, v in (tiles or {}).items()},
        "damaged_tiles": {"count": len(damaged), "boxes": damaged},
        "timings_s": {k: round(float(v), 3) for k, v in (timings or {}).items()},
        "outputs": {k: os.fspath(v) for k, v in (outputs or {}).items()},
        "versions": software_versions(),
    }
    if extra:
        summary.update(extra)
    return summary


def write_summary(path: str | os.PathLike, data: Mapping) -> Path:
    """Write ``summary.json`` atomically (numpy values and boxes are converted)."""
    return atomic_write_json(path, _plain(data))


def _plain(obj):
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "to_list"):
        return obj.to_list()
    return obj
