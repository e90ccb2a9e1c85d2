"""Polygons to label maps with the pixel-edge convention of the writers (and QuPath).

Pixel (r, c) covers [c, c+1) x [r, r+1); it belongs to a polygon when its centre (c + 0.5, r + 0.5) lies inside.
A polygon vectorised from a mask by ``vector.polygons`` therefore rasterises back to exactly that mask. Holes
leave what was underneath untouched. Pure numpy/scikit-image/shapely (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from skimage.draw import polygon as fill_ring

__all__ = ["polygon_mask", "rasterize", "ring_mask"]


def ring_mask(xy: np.ndarray, shape: tuple[int, int], shift: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels whose centre is inside the ring ``xy`` ((n, 2) x, y in pixel units).

    ``shift`` is subtracted from the vertices before scikit-image samples integer points: 0.5 samples pixel
    centres (the pixel-edge convention); MoNuSeg's XML uses 1.0 (see ``datasets.monuseg``).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 3:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return fill_ring(xy[:, 1] - shift, xy[:, 0] - shift, shape=shape)


def polygon_mask(geom, shape: tuple[int, int], shift: float = 0.5) -> np.ndarray:
    """Boolean mask of a shapely Polygon or MultiPolygon (holes excluded) in an image of ``shape`` (h, w)."""
    mask = np.zeros(shape, bool)
    _draw(mask, geom, True, shift)
    return mask


def rasterize(
    items: Iterable[tuple[object, int]], shape: tuple[int, int], *, fill: int = 0, dtype=np.int32, shift: float = 0.5
) -> np.ndarray:
    """Burn ``(geometry, value)`` pairs into a (h, w) array in order (later items win where they overlap).

    Geometries are shapely (Multi)Polygons in pixel coordinates; other geometry types (points, lines) are
    skipped because they cover no pixel centre reliably.
    """
    out = np.full(shape, fill, dtype=dtype)
    for geom, value in items:
        _draw(out, geom, value, shift)
    return out


def _draw(out: np.ndarray, geom, value, shift: float) -> None:
    kind = getattr(geom, "geom_type", "")
    if kind == "Polygon":
        if geom.is_empty:
            return
        minx, miny, maxx, maxy = geom.bounds
        h, w = out.shape[:2]
        # work in the bounding window only: one small mask per polygon, not one per image
        x0, y0 = max(int(np.floor(minx)) - 1, 0), max(int(np.floor(miny)) - 1, 0)
        x1, y1 = min(int(np.ceil(maxx)) + 1, w), min(int(np.ceil(maxy)) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return
        window = (y1 - y0, x1 - x0)
        origin = np.array([x0, y0], np.float64)
        inside = np.zeros(window, bool)
        rr, cc = ring_mask(np.asarray(geom.exterior.coords)[:, :2] - origin, window, shift)
        inside[rr, cc] = True
        for hole in geom.interiors:
            rr, cc = ring_mask(np.asarray(hole.coords)[:, :2] - origin, window, shift)
            inside[rr, cc] = False
        out[y0:y1, x0:x1][inside] = value
    elif kind in ("MultiPolygon", "GeometryCollection"):
        for part in geom.geoms:
            _draw(out, part, value, shift)
