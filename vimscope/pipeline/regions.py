"""Regions of interest: boxes or polygons in level-0 pixels, from code or from QuPath-exported GeoJSON.

A run's region decides which tiles are planned; outputs outside it are left empty (class 0), tested per output
pixel centre, so a polygonal ROI gives a polygonal result rather than the tiles' squares.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError, RegionError
from vimscope.types import Box
from vimscope.writers.geojson import classification_name, read_features


def _geometry_of(obj):
    import shapely
    from shapely.geometry import shape

    if obj is None:
        return None
    if isinstance(obj, Box):
        return shapely.box(obj.x, obj.y, obj.x1, obj.y1)
    if hasattr(obj, "geom_type"):
        return obj
    if isinstance(obj, dict):  # a GeoJSON geometry or feature
        return shape(obj.get("geometry", obj))
    if isinstance(obj, (list, tuple)) and len(obj) == 4 and all(isinstance(v, (int, float)) for v in obj):
        x, y, w, h = obj
        return shapely.box(x, y, x + w, y + h)
    if isinstance(obj, Iterable):
        parts = [_geometry_of(o) for o in obj]
        return shapely.union_all([p for p in parts if p is not None])
    raise RegionError(f"cannot use {type(obj).__name__} as a region (give boxes or shapely polygons)")


def read_geojson_region(path: str | Path, class_name: str | None = None):
    """The union of the (multi)polygons in a GeoJSON file (QuPath: File > Export objects as GeoJSON).

    ``class_name`` keeps only features of that classification. Coordinates are level-0 pixels.
    """
    import shapely
    from shapely.geometry import shape

    path = Path(path)
    features = read_features(path, what="region file", bare_geometry=True)
    geoms = []
    for f in features:
        if class_name is not None and classification_name(f) != class_name:
            continue
        g = f.get("geometry") if isinstance(f, dict) else None
        if not g:
            continue
        try:
            geom = shape(g)
        except Exception:
            raise ConfigError(f"{path}: a feature has an invalid geometry") from None
        if geom.geom_type in ("Polygon", "MultiPolygon", "GeometryCollection"):
            geoms.append(geom.buffer(0) if not geom.is_valid else geom)
    if not geoms:
        which = f" of class {class_name!r}" if class_name else ""
        raise RegionError(f"{path}: no polygons{which} in the region file")
    return shapely.union_all(geoms)


def resolve_region(region=None, *, roi=None, roi_class=None, exclude=None, image_size=None):
    """One shapely geometry (level-0 px) from a code region, an ROI file and an exclusion file, or None.

    ``image_size`` = (width, height) of level 0: a region entirely outside the image is a ``RegionError``.
    """
    geom = _geometry_of(region)
    if roi is not None:
        from_file = read_geojson_region(roi, roi_class)
        geom = from_file if geom is None else geom.intersection(from_file)
    if exclude is not None:
        import shapely

        if geom is None and image_size is not None:
            geom = shapely.box(0, 0, *image_size)
        if geom is not None:
            geom = geom.difference(read_geojson_region(exclude))
    if geom is None:
        return None
    if image_size is not None:
        import shapely

        geom = geom.intersection(shapely.box(0, 0, *image_size))
    if geom.is_empty or geom.area == 0:
        raise RegionError("the region is empty or lies outside the image")
    return geom


class RegionMask:
    """Which output pixels lie in the region: pixel (r, c) counts when its centre, in level 0, is inside."""

    def __init__(self, geometry, scale: float) -> None:
        import shapely

        self.geometry = geometry
        self.scale = float(scale)
        shapely.prepare(geometry)

    def mask(self, box: Box) -> np.ndarray | None:
        """(h, w) bool for an output-pixel box, or None when the whole box is inside."""
        import shapely

        s = self.scale
        cell = shapely.box(box.x * s, box.y * s, box.x1 * s, box.y1 * s)
        if self.geometry.contains(cell):
            return None
        if not self.geometry.intersects(cell):
            return np.zeros((box.h, box.w), bool)
        xs = (np.arange(box.x, box.x1) + 0.5) * s
        ys = (np.arange(box.y, box.y1) + 0.5) * s
        gx, gy = np.meshgrid(xs, ys)
        return shapely.contains_xy(self.geometry, gx, gy)
