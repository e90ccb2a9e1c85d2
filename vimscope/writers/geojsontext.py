"""GeoJSON text of features and of pixel outlines without a ``json.dumps`` or GEOS's writer per object; used by
``GeoJSONWriter`` (``add_texts``, the geometries of every batch), tested against both (``test_featuretext.py``).

Outlines on pixel edges have whole-number vertices, which GEOS writes as "<integer>.0": below 1e15 (then "1e+15")
and not -0.0 ("-0.0"). Those are written here in one compiled pass (GEOS took about 20 µs a nucleus);
anything else is left to ``shapely.to_geojson``.
"""

from __future__ import annotations

import json

import numba
import numpy as np


def feature_text(fid: str, geometry: str, properties: str | None) -> str:
    """One feature as ``GeoJSONWriter`` writes it (no separator): id, geometry JSON, properties JSON."""
    head = '{"type":"Feature","id":' + json.dumps(str(fid)) + ',"geometry":' + geometry
    return head + (',"properties":' + properties + "}" if properties is not None else "}")


_INTEGRAL_LIMIT = 1e15
_POLYGON = np.frombuffer(b'{"type":"Polygon","coordinates":', np.uint8)
_MULTI = np.frombuffer(b'{"type":"MultiPolygon","coordinates":', np.uint8)


def polygon_texts(geoms) -> list[str] | None:
    """``shapely.to_geojson`` of 2-D, non-empty Polygons and MultiPolygons whose coordinates are all whole numbers
    (outlines on pixel edges), written in one compiled pass (GEOS took 20 µs a nucleus); None for anything else,
    which GEOS then writes."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return []
    types = shapely.get_type_id(geoms)
    if not np.isin(types, (3, 6)).all() or shapely.is_empty(geoms).any() or shapely.has_z(geoms).any():
        return None
    kind, coords, offsets = shapely.to_ragged_array(geoms)
    if kind == shapely.GeometryType.POLYGON:  # all Polygons: one polygon per geometry
        (ring_off, poly_off), geom_off = offsets, np.arange(len(geoms) + 1)
    else:
        ring_off, poly_off, geom_off = offsets
    if len(coords) and not _integral(coords):
        return None
    buf, ends = _write_polygons(coords.astype(np.int64), ring_off, poly_off, geom_off, types == 6, _POLYGON, _MULTI)
    text = buf.tobytes().decode("ascii")
    starts = np.concatenate([[0], ends[:-1]]).tolist()
    return [text[a:b] for a, b in zip(starts, ends.tolist())]


def _integral(coords: np.ndarray) -> bool:
    return bool(
        (np.abs(coords) < _INTEGRAL_LIMIT).all()
        and (np.floor(coords) == coords).all()
        and not ((coords == 0) & np.signbit(coords)).any()
    )


@numba.njit(cache=True, nogil=True)
def _put_int(buf, pos, v):  # pragma: no cover - compiled
    """Write ``v`` as GEOS writes a whole coordinate ("-12.0") at ``pos``; returns the position after it."""
    if v < 0:
        buf[pos] = 45  # "-"
        pos += 1
        v = -v
    digits, rest = 1, v // 10
    while rest:
        digits += 1
        rest //= 10
    for k in range(digits - 1, -1, -1):  # last digit first, from the right
        buf[pos + k] = 48 + v % 10
        v //= 10
    pos += digits
    buf[pos], buf[pos + 1] = 46, 48  # ".0"
    return pos + 2


@numba.njit(cache=True, nogil=True)
def _write_polygons(coords, ring_off, poly_off, geom_off, multi, head_polygon, head_multi):  # pragma: no cover
    """The GeoJSON of each geometry into one byte buffer; returns it and each geometry's end."""
    n = len(geom_off) - 1
    size = 40 * len(coords) + 4 * (len(ring_off) + len(poly_off)) + 48 * n + 16
    buf = np.empty(size, np.uint8)
    ends = np.empty(n, np.int64)
    pos = 0
    for g in range(n):
        head = head_multi if multi[g] else head_polygon
        buf[pos : pos + len(head)] = head
        pos += len(head)
        if multi[g]:
            buf[pos] = 91  # "["
            pos += 1
        for p in range(geom_off[g], geom_off[g + 1]):
            if p > geom_off[g]:
                buf[pos] = 44  # ","
                pos += 1
            buf[pos] = 91
            pos += 1
            for r in range(poly_off[p], poly_off[p + 1]):
                if r > poly_off[p]:
                    buf[pos] = 44
                    pos += 1
                buf[pos] = 91
                pos += 1
                for k in range(ring_off[r], ring_off[r + 1]):
                    if k > ring_off[r]:
                        buf[pos] = 44
                        pos += 1
                    buf[pos] = 91
                    pos = _put_int(buf, pos + 1, coords[k, 0])
                    buf[pos] = 44
                    pos = _put_int(buf, pos + 1, coords[k, 1])
                    buf[pos] = 93  # "]"
                    pos += 1
                buf[pos] = 93
                pos += 1
            buf[pos] = 93
            pos += 1
        if multi[g]:
            buf[pos] = 93
            pos += 1
        buf[pos] = 125  # "}"
        pos += 1
        ends[g] = pos
    return buf[:pos], ends
