"""Outlines on the ground: level-0 pixel geometries to map coordinates, the size of a pixel there, and areas in m².

``transform`` is GDAL's affine ``(x0, dx, rx, y0, ry, dy)`` of level 0, as ``SlideMeta.transform`` holds it.
Areas: in a projected CRS the plane area times the square of the axis unit in metres (feet count as feet), except
in Mercator projections, whose plane areas grow as 1/cos² of the latitude (a factor of 2 at 45°): there, as in a
geographic CRS, the area is geodesic on the CRS's ellipsoid (``pyproj.Geod``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import shapely


def to_map(geoms, transform: Sequence[float]):
    """Geometries (or an object array of them) in level-0 pixel coordinates, placed in map coordinates."""
    x0, dx, rx, y0, ry, dy = (float(v) for v in transform)
    m = np.array([[dx, ry], [rx, dy]])
    return shapely.transform(geoms, lambda xy: xy @ m + np.array([x0, y0]))


def map_pixel_size(transform: Sequence[float], scale: float = 1.0) -> float:
    """The side of a pixel ``scale`` level-0 pixels wide, in map units (the mean of its two edges' lengths)."""
    _, dx, rx, _, ry, dy = (float(v) for v in transform)
    return scale * (np.hypot(dx, ry) + np.hypot(rx, dy)) / 2


@functools.lru_cache(maxsize=16)
def _area_rule(crs: str):
    """(metres per axis unit, None) for plane areas, or (None, (geod, to_geographic)) for geodesic ones."""
    from pyproj import CRS, Transformer

    c = CRS.from_user_input(crs)
    if c.is_geographic:
        return None, (c.get_geod(), None)
    method = (c.coordinate_operation.method_name if c.coordinate_operation else "").lower()
    if "mercator" in method and "transverse" not in method:
        to_geo = Transformer.from_crs(c, c.geodetic_crs, always_xy=True)
        return None, (c.get_geod(), to_geo)
    return float(c.axis_info[0].unit_conversion_factor), None


def ground_area_m2(geoms, crs: str) -> np.ndarray:
    """Areas in m² of polygons in map coordinates of ``crs`` (see the module docstring for how)."""
    geoms = np.asarray(geoms, dtype=object)
    factor, geodesic = _area_rule(str(crs))
    if factor is not None:
        return shapely.area(geoms) * factor**2
    geod, to_geo = geodesic
    out = np.empty(len(geoms))
    for i, g in enumerate(geoms):
        if to_geo is not None:
            g = shapely.transform(g, lambda xy: np.column_stack(to_geo.transform(xy[:, 0], xy[:, 1])))
        out[i] = abs(geod.geometry_area_perimeter(g)[0])
    return out
