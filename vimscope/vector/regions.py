"""Class regions of a whole slide as polygons, band by band, with regions that cross band borders merged.

The class map is read in full-width row bands (never whole). A region that does not reach the band's lower edge
is complete and is yielded at once; one that does is kept open and merged (shapely union; coordinates are whole
pixel corners, so the union is exact) with the pieces of the next band that share an edge with it. Regions are
4-connected, as in ``polygons.label_polygons``: the result equals polygonising the whole map at once.

Regions smaller than ``min_area`` output pixels are dropped (single pixels and slivers are noise to a QuPath user,
not annotations); finished outlines can be cut (``clip``: to the image and the region of interest) before they go
to map coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import shapely

from vimscope.types import Box
from vimscope.vector.polygons import MAX_REGION_SIMPLIFY, _transform, label_polygons

MIN_REGION_AREA = 16  # output pixels: smaller class regions are not written


def iter_class_regions(
    read: Callable[[Box], np.ndarray],
    out_shape: tuple[int, int],
    *,
    band_height: int = 1024,
    background: int | None = 0,
    simplify: float = MAX_REGION_SIMPLIFY,
    offset: Sequence[float] = (0.0, 0.0),
    scale: float = 1.0,
    transform: Sequence[float] | None = None,
    min_area: float = 0.0,
    clip: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[int, shapely.Polygon]]:
    """Yield ``(class value, polygon)`` for every region of the class map ``read(box)`` returns.

    ``offset``/``scale``/``transform`` map output pixels to level-0 pixels or map units as in ``label_polygons``;
    ``simplify`` (output pixels, at most 0.5 for region outlines) is applied to finished regions. Regions under
    ``min_area`` output pixels are dropped; ``clip`` maps the level-0 outlines (an object array, before
    ``transform``) to what is kept of them (empty ones are dropped).
    """
    if simplify > MAX_REGION_SIMPLIFY:
        raise ValueError(f"region outlines are simplified by at most {MAX_REGION_SIMPLIFY} px")
    h, w = out_shape
    open_pieces: list[tuple[int, shapely.Polygon]] = []

    def finish(done: list[tuple[int, shapely.Polygon]]):
        """Simplify and place finished regions, all of a band at once (shapely's array functions)."""
        if not done:
            return []
        polys = np.empty(len(done), dtype=object)
        polys[:] = [p for _, p in done]
        values = np.array([v for v, _ in done])
        if min_area:
            big = shapely.area(polys) >= min_area  # whole pixels: exact before any simplification
            polys, values = polys[big], values[big]
        if simplify:
            polys = shapely.simplify(polys, simplify, preserve_topology=True)
        polys = _transform(polys, offset, scale, None)
        if clip is not None and len(polys):
            polys = np.asarray(clip(polys), dtype=object)
            kept = ~shapely.is_empty(polys)
            polys, values = polys[kept], values[kept]
        if transform is not None:
            polys = _transform(polys, (0.0, 0.0), 1.0, transform)
        return list(zip(values.tolist(), polys))

    for y in range(0, h, band_height):
        band = Box(0, y, w, min(band_height, h - y))
        pieces = list(label_polygons(np.asarray(read(band)), (0, band.y), 1.0, background=background))
        border = shapely.LineString([(0, band.y), (w, band.y)])
        merged, still_open = _merge_across(open_pieces, pieces, border)
        done = list(still_open)  # open regions nothing in this band continued: complete
        open_pieces = []
        # a region of whole pixels reaching the band's last row has an edge along its lower border
        reach = shapely.bounds(np.array([p for _, p in merged], dtype=object))[:, 3] >= band.y1 if merged else []
        for (value, poly), low in zip(merged, reach):
            if band.y1 < h and low:
                open_pieces.append((value, poly))
            else:
                done.append((value, poly))
        yield from finish(done)
    yield from finish(open_pieces)


def _merge_across(open_pieces, pieces, border):
    """Union each new piece with the open pieces of its class it shares a stretch of ``border`` with."""
    if not open_pieces:
        return pieces, []
    parent = list(range(len(open_pieces) + len(pieces)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = shapely.STRtree([p for _, p in open_pieces])
    n_open = len(open_pieces)
    top = border.bounds[1]
    tops = shapely.bounds(np.array([p for _, p in pieces], dtype=object))[:, 1] if pieces else []
    for j, (value, poly) in enumerate(pieces):
        if tops[j] > top:  # does not reach the border row (whole-pixel outlines)
            continue
        edge = poly.boundary.intersection(border)
        if edge.length == 0:
            continue
        for i in tree.query(edge):
            ov, op = open_pieces[i]
            if ov == value and op.boundary.intersection(edge).length > 0:
                parent[find(n_open + j)] = find(int(i))
    groups: dict[int, list[int]] = {}
    for k in range(len(parent)):
        groups.setdefault(find(k), []).append(k)
    merged, untouched = [], []
    everything = open_pieces + pieces
    for members in groups.values():
        if len(members) == 1:
            k = members[0]
            (untouched if k < n_open else merged).append(everything[k])
            continue
        value = everything[members[0]][0]
        union = shapely.union_all([everything[k][1] for k in members])
        for part in shapely.get_parts(union):
            merged.append((value, shapely.simplify(part, 0)))  # drops the collinear vertices left on the seam
    return merged, untouched
