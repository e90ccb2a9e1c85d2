"""Regions of interest: boxes or polygons in level-0 pixels, from code or from QuPath-exported GeoJSON.

A run's region decides which tiles are planned; outputs outside it are left empty (class 0), tested per output
pixel centre, so a polygonal ROI gives a polygonal result rather than the tiles' squares. Invalid polygons (a
self-intersecting "bow-tie") are repaired with ``shapely.make_valid``, which keeps every area they cover, and a
warning says so. A region of many features (tens of thousands of small annotations) is indexed once (an STRtree
of its parts) so that each output box or polygon looks only at the parts near it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError, RegionError
from vimscope.types import Box
from vimscope.vector.geojson import classification_name, read_features
from vimscope.vector.polygons import polygonal

log = logging.getLogger("vimscope.vector")

_POLYGONAL = ("Polygon", "MultiPolygon", "GeometryCollection")


def repair(geom, what: str = "the region"):
    """``geom`` made valid keeping every area it covers (``shapely.make_valid``), with a warning when it was not
    valid; ``buffer(0)`` would drop a lobe of a self-intersecting polygon."""
    import shapely

    if geom.is_valid:
        return geom
    fixed = polygonal(shapely.make_valid(geom))
    log.warning("%s: invalid polygon (self-intersecting?) repaired, keeping every area it covers", what)
    return fixed


def _geometry_of(obj):
    import shapely
    from shapely.geometry import shape

    if obj is None:
        return None
    if isinstance(obj, Box):
        return shapely.box(obj.x, obj.y, obj.x1, obj.y1)
    if hasattr(obj, "geom_type"):
        return repair(obj)
    if isinstance(obj, dict):  # a GeoJSON geometry or feature
        return repair(shape(obj.get("geometry", obj)))
    if isinstance(obj, (list, tuple)) and len(obj) == 4 and all(isinstance(v, (int, float)) for v in obj):
        x, y, w, h = obj
        return shapely.box(x, y, x + w, y + h)
    if isinstance(obj, Iterable):
        parts = [_geometry_of(o) for o in obj]
        return shapely.union_all([p for p in parts if p is not None])
    raise RegionError(f"cannot use {type(obj).__name__} as a region (give boxes or shapely polygons)")


def read_geojson_region(path: str | Path, class_name: str | None = None):
    """The union of the (multi)polygons in a GeoJSON file (QuPath: File > Export objects as GeoJSON).

    ``class_name`` keeps only features of that classification. Coordinates are level-0 pixels. Invalid polygons
    are repaired keeping their whole area (one warning for the file)."""
    import shapely
    from shapely.geometry import shape

    path = Path(path)
    features = read_features(path, what="region file", bare_geometry=True)
    found = []
    for f in features:
        if class_name is not None and classification_name(f) != class_name:
            continue
        g = f.get("geometry") if isinstance(f, dict) else None
        if g:
            found.append(g)
    geoms = _fast_polygons(found)
    if geoms is None:  # something unusual: shapely's reader, one feature at a time, says what
        geoms = []
        for g in found:
            try:
                geom = shape(g)
            except RecursionError:
                raise ConfigError(f"{path}: a feature's geometry is nested too deeply") from None
            except Exception:
                raise ConfigError(f"{path}: a feature has an invalid geometry") from None
            if geom.geom_type in _POLYGONAL:
                geoms.extend(shapely.get_parts(polygonal(geom)) if geom.geom_type != "Polygon" else [geom])
    if not geoms:
        which = f" of class {class_name!r}" if class_name else ""
        raise RegionError(f"{path}: no polygons{which} in the region file")
    geoms = np.asarray(geoms, dtype=object)
    geoms = geoms[~shapely.is_empty(geoms)]
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms[invalid] = [polygonal(g) for g in shapely.make_valid(geoms[invalid])]
        log.warning(
            "%s: %d invalid polygon(s) (self-intersecting?) repaired, keeping every area they cover",
            path,
            int(invalid.sum()),
        )
    return union_parts(geoms)


def _fast_polygons(geometries: list) -> list | None:
    """Shapely polygons of GeoJSON Polygon / MultiPolygon mappings made in one call (``from_ragged_array``), or
    None when any is something else or malformed (then ``shape`` reads them one by one)."""
    import shapely

    coords, ring_ends, poly_ends = [], [], []
    n = 0
    try:
        for g in geometries:
            kind = g.get("type") if isinstance(g, dict) else None
            polys = [g["coordinates"]] if kind == "Polygon" else g["coordinates"] if kind == "MultiPolygon" else None
            if polys is None:
                return None
            for rings in polys:
                for ring in rings:
                    xy = np.asarray(ring, dtype=np.float64)
                    if xy.ndim != 2 or xy.shape[1] < 2 or len(xy) < 4 or (xy[0] != xy[-1]).any():
                        return None
                    coords.append(xy[:, :2])
                    n += len(xy)
                    ring_ends.append(n)
                poly_ends.append(len(ring_ends))
        if not poly_ends:
            return []
        ring_offsets = np.concatenate([[0], ring_ends]).astype(np.int64)
        poly_offsets = np.concatenate([[0], poly_ends]).astype(np.int64)
        kind = shapely.GeometryType.POLYGON
        return list(shapely.from_ragged_array(kind, np.concatenate(coords), (ring_offsets, poly_offsets)))
    except (TypeError, ValueError, KeyError, IndexError, RecursionError, shapely.errors.GEOSException):
        return None


def union_parts(geoms: np.ndarray):
    """The union of many valid polygons, fast: only the groups that touch or overlap are merged (found with an
    STRtree), each group on its own (``coverage_union_all`` where a large group is a coverage, such as tiles);
    the disjoint results form one valid MultiPolygon. ``union_all`` of 100,000 small annotations takes over a
    minute; this about two seconds."""
    import shapely
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) < 2:
        return shapely.union_all(geoms)
    n = len(geoms)
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    k, comp = connected_components(coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)), directed=False)
    order = np.argsort(comp, kind="stable")
    sizes = np.bincount(comp, minlength=k)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    merged = np.empty(k, dtype=object)
    single = sizes == 1
    merged[single] = geoms[order[starts[single]]]
    for c in np.flatnonzero(~single):
        group = geoms[order[starts[c] : starts[c] + sizes[c]]]
        if len(group) > 256 and shapely.coverage_is_valid(group):
            merged[c] = shapely.coverage_union_all(group)
        else:
            merged[c] = shapely.union_all(group)
    parts = [p for p in shapely.get_parts(merged) if p.geom_type == "Polygon" and not p.is_empty]
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def resolve_region(region=None, *, roi=None, roi_class=None, exclude=None, image_size=None):
    """One shapely geometry (level-0 px) from a code region, an ROI file and an exclusion file, or None.

    ``image_size`` = (width, height) of level 0: a region entirely outside the image is a ``RegionError``.
    """
    import shapely

    geom = _geometry_of(region)
    if roi is not None:
        from_file = read_geojson_region(roi, roi_class)
        geom = from_file if geom is None else geom.intersection(from_file)
    if exclude is not None:
        if geom is None and image_size is not None:
            geom = shapely.box(0, 0, *image_size)
        if geom is not None:
            geom = geom.difference(read_geojson_region(exclude))
    if geom is None:
        return None
    if image_size is not None:
        geom = _within_box(geom, *image_size)
    if geom.is_empty or geom.area == 0:
        raise RegionError("the region is empty or lies outside the image")
    return polygonal(geom)


def _within_box(geom, width: float, height: float):
    """``geom`` cut to [0, width] x [0, height]; only the parts that cross the edge are intersected (a region of
    many parts mostly lies inside)."""
    import shapely

    minx, miny, maxx, maxy = geom.bounds
    if minx >= 0 and miny >= 0 and maxx <= width and maxy <= height:
        return geom
    box = shapely.box(0, 0, width, height)
    if geom.geom_type != "MultiPolygon":
        return polygonal(geom.intersection(box))
    parts = shapely.get_parts(geom)
    b = shapely.bounds(parts)
    inside = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= width) & (b[:, 3] <= height)
    cut = shapely.get_parts(shapely.intersection(parts[~inside], box))
    kept = list(parts[inside]) + [p for p in cut if p.geom_type == "Polygon" and not p.is_empty]
    if not kept:
        return shapely.Polygon()
    return kept[0] if len(kept) == 1 else shapely.MultiPolygon(kept)


class RegionMask:
    """Which output pixels lie in the region: pixel (r, c) counts when its centre, in level 0, is inside.

    The region's polygons are indexed once (STRtree); a box, or a polygon to clip, meets only its neighbours."""

    def __init__(self, geometry, scale: float) -> None:
        import shapely

        self.geometry = geometry
        self.scale = float(scale)
        shapely.prepare(geometry)
        self.parts = shapely.get_parts(geometry)
        shapely.prepare(self.parts)
        self.tree = shapely.STRtree(self.parts)

    def __getstate__(self):
        return {"geometry": self.geometry, "scale": self.scale}

    def __setstate__(self, state):
        self.__init__(state["geometry"], state["scale"])

    def mask(self, box: Box) -> np.ndarray | None:
        """(h, w) bool for an output-pixel box, or None when the whole box is inside."""
        import shapely

        s = self.scale
        cell = shapely.box(box.x * s, box.y * s, box.x1 * s, box.y1 * s)
        near = self.tree.query(cell, predicate="intersects")
        if not len(near):
            return np.zeros((box.h, box.w), bool)
        if shapely.contains(self.parts[near], cell).any():
            return None
        # the nearby parts only, as one prepared geometry (the parts are disjoint: a valid MultiPolygon)
        local = self.parts[near[0]] if len(near) == 1 else shapely.MultiPolygon(list(self.parts[near]))
        shapely.prepare(local)
        # only the pixel centres inside some nearby part's bounding box are tested
        b = shapely.bounds(self.parts[near]) / s - 0.5  # pixel-centre units: centre (c + 0.5) * s
        c0 = np.clip(np.floor(b[:, 0]).astype(np.int64) - box.x, 0, box.w)
        r0 = np.clip(np.floor(b[:, 1]).astype(np.int64) - box.y, 0, box.h)
        c1 = np.clip(np.ceil(b[:, 2]).astype(np.int64) + 1 - box.x, 0, box.w)
        r1 = np.clip(np.ceil(b[:, 3]).astype(np.int64) + 1 - box.y, 0, box.h)
        candidate = np.zeros((box.h, box.w), bool)
        for a0, a1, d0, d1 in zip(r0.tolist(), r1.tolist(), c0.tolist(), c1.tolist()):
            candidate[a0:a1, d0:d1] = True
        rows, cols = np.nonzero(candidate)
        out = np.zeros((box.h, box.w), bool)
        out[rows, cols] = shapely.contains_xy(local, (cols + box.x + 0.5) * s, (rows + box.y + 0.5) * s)
        return out

    def clip(self, geoms: np.ndarray) -> np.ndarray:
        """Polygons (level-0 px, an object array) cut to the region; those wholly inside are returned as they are,
        those wholly outside become empty."""
        return clip_to(geoms, self.parts, self.tree)


def clip_to(geoms: np.ndarray, parts: np.ndarray, tree) -> np.ndarray:
    """``geoms`` intersected with the union of ``parts`` (indexed by ``tree``), polygonal parts only."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    if not len(geoms):
        return out
    inside = np.zeros(len(geoms), bool)
    pairs = tree.query(geoms, predicate="within")  # (geom index, part index): geom inside one part
    inside[pairs[0]] = True
    for i in np.flatnonzero(~inside):
        near = tree.query(geoms[i], predicate="intersects")
        if not len(near):
            out[i] = shapely.Polygon()
            continue
        cut = shapely.intersection(geoms[i], shapely.union_all(parts[near]))
        out[i] = polygonal(cut) if not cut.is_empty else shapely.Polygon()
    return out


def outline_clip(image_size: tuple[float, float], region: RegionMask | None = None):
    """``clip(geoms)`` for outlines in level-0 px: cut to the image (``(width, height)``) and to ``region``.
    Outlines run along output-pixel edges, which can lie past the image's last pixel and half a pixel outside
    the region whose pixel centres they hold."""
    from vimscope.vector.polygons import clip_to_image

    def clip(geoms: np.ndarray) -> np.ndarray:
        geoms = clip_to_image(geoms, image_size)
        return region.clip(geoms) if region is not None else geoms

    return clip
