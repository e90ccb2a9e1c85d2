"""Outlines of every 4-connected region of a label map, traced along pixel edges with array operations only.

The fast path of ``polygons.label_polygons`` (``polygons.faces_reference`` is the plain one: GEOS polygonizes the
noded boundary linework). Pixel (r, c) covers [c, c+1) x [r, r+1); every unit edge between two different values
is a directed edge of the region on its right (top edges run east, right edges south, bottom edges west, left
edges north). At the end of each edge the ring goes on by the first of:

- left, onto the diagonal pixel ahead, when that pixel has the region's value and either the pixel straight ahead
  has it too or both belong to one component (a "pinch" inside one region: the outline and the hole it encloses
  then touch at that corner, OGC-valid);
- straight, along the pixel ahead (same value);
- right, around the same pixel.

So each ring holds one 4-connected component's edges. Rings are the cycles of that successor map, walked once in
compiled code (``_cycles``; pointer doubling in array operations took 15 times longer): the smallest edge index of
a cycle names it, and each edge's position counts from there. Corners (a change of direction) are the vertices;
a ring's signed area tells an outline (one per component) from a hole. Components come from
``scipy.ndimage.label`` per value when the map holds few distinct values (class maps); for maps of many values
(instance labels) each value is taken as one component, which the tracer checks (one outline per value, no ring
through a pinch twice) and corrects where it fails.
"""

from __future__ import annotations

import numba
import numpy as np
import shapely
from scipy import ndimage as ndi

FEW_VALUES = 64  # maps whose values span less than this get exact components per value
# per direction (east, south, west, north): the pixel straight ahead, the diagonal one ahead-left, start vertex
_AHEAD = ((0, 1), (1, 0), (0, -1), (-1, 0))
_AHEAD_LEFT = ((-1, 1), (1, 1), (1, -1), (-1, -1))
_START = ((0, 0), (1, 0), (1, 1), (0, 1))  # (dx, dy) of the edge's first corner from the pixel's top-left


def trace_regions(labels: np.ndarray, background=None) -> tuple[np.ndarray, np.ndarray]:
    """Every 4-connected region of ``labels`` (2-D) but those of value ``background``: (polygons, values).

    Polygons (a numpy array of shapely Polygons, in pixel coordinates) come in raster order of their first pixel;
    exteriors clockwise and holes counter-clockwise (x right, y up, as GEOS's polygonizer gives them), vertices
    only at corners, holes that touch their outline or each other at a corner as separate rings.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    h, w = labels.shape
    if labels.size == 0:
        return np.empty(0, object), np.empty(0, labels.dtype)
    lo, hi = labels.min(), labels.max()
    # padded with a value no label has, in the narrowest signed type that holds them all and it
    wide = np.int64
    for t in (np.int16, np.int32):
        if np.iinfo(t).min < int(lo) and int(hi) <= np.iinfo(t).max:
            wide = t
            break
    padded = np.full((h + 2, w + 2), np.iinfo(wide).min, wide)
    padded[1:-1, 1:-1] = labels
    if int(hi) - int(lo) < FEW_VALUES:  # class maps: components of every value
        values = [v for v in np.unique(labels) if background is None or v != background]
        rings = _trace(padded, lambda _pinched: _components(labels, values), background)
        return rings.polygons(), rings.values(padded)
    # instance maps: each value is taken as one component, except the values that touch themselves at a corner
    # (a pinch: are the two pixels connected around?) and those with several outlines
    state = {"comp": padded, "next": int(hi) + 1}

    def refine(values):
        if len(values):
            comp = state["comp"].astype(np.int64, copy=True) if state["comp"] is padded else state["comp"]
            state["comp"], state["next"] = comp, _relabel(labels, comp, values, state["next"])
        return state["comp"]

    rings = _trace(padded, refine, background)
    several = rings.shared_outlines(state["comp"], padded)
    if len(several):
        rings.attach(refine(several))
    return rings.polygons(), rings.values(padded)


def _components(labels: np.ndarray, values) -> np.ndarray:
    """Padded component ids (int32, 0 outside every listed value): the 4-connected components of each value in
    ``values``, numbered one value after the other."""
    h, w = labels.shape
    comp = np.zeros((h + 2, w + 2), np.int32)
    inner = comp[1:-1, 1:-1]
    n = 0
    for v in values:
        lab, k = ndi.label(labels == v, output=np.int32)
        if n:
            lab[lab > 0] += n
        inner += lab  # the values' pixels are disjoint
        n += k
    return comp


def _relabel(labels: np.ndarray, comp: np.ndarray, values, first: int) -> int:
    """Give each 4-connected component of the listed values its own id (from ``first``) in ``comp`` (padded),
    looking only inside each value's bounding box; returns the next free id."""
    values = np.unique(np.asarray(values))
    boxes = None
    if labels.dtype.kind in "iub" and values.min() > 0 and values.max() <= 4 * labels.size:
        boxes = ndi.find_objects(np.where(np.isin(labels, values), labels, 0).astype(np.int64, copy=False))
    inner = comp[1:-1, 1:-1]
    for v in values.tolist():
        if boxes is not None:
            sl = boxes[v - 1]
        else:
            rr, cc = np.nonzero(labels == v)
            sl = (slice(rr.min(), rr.max() + 1), slice(cc.min(), cc.max() + 1))
        lab, k = ndi.label(labels[sl] == v)
        if k > 1:
            sub = inner[sl]
            inside = lab > 0
            sub[inside] = lab[inside] + first - 1
            first += k
    return first


class _Rings:
    """The traced rings of a map: edges (pixel, direction) in ring order, and where each ring starts."""

    def __init__(self, rows, cols, dirs, order, ring_start, ring_len):
        self.rows, self.cols, self.dirs = rows, cols, dirs  # per edge, compact index
        self.order = order  # edge indices, ring after ring, each ring in traversal order
        self.ring_start, self.ring_len = ring_start, ring_len  # offsets into ``order``
        first = order[ring_start] if len(ring_start) else np.zeros(0, np.int64)
        self.first_row, self.first_col = rows[first], cols[first]

    def shared_outlines(self, comp: np.ndarray, padded: np.ndarray) -> np.ndarray:
        """Values with a component id that several outlines share (pieces of one value that do not touch)."""
        outline = self._areas() > 0
        rc = comp[self.first_row[outline] + 1, self.first_col[outline] + 1]
        ids, counts = np.unique(rc, return_counts=True)
        shared = np.isin(rc, ids[counts > 1])
        return np.unique(padded[self.first_row[outline][shared] + 1, self.first_col[outline][shared] + 1])

    def values(self, padded: np.ndarray) -> np.ndarray:
        outline = self._areas() > 0
        return padded[self.first_row[outline] + 1, self.first_col[outline] + 1]

    def _corners(self):
        """Per ring, its corners' (x, y) in order, as flat arrays plus per-ring offsets and counts."""
        e = self.order
        d = self.dirs[e]
        prev = np.empty_like(d)
        prev[1:] = d[:-1]
        prev[self.ring_start] = d[self.ring_start + self.ring_len - 1]  # a ring's first edge follows its last
        corner = d != prev
        dx = np.array([s[0] for s in _START])[d]
        dy = np.array([s[1] for s in _START])[d]
        x = (self.cols[e] + dx)[corner].astype(np.float64)
        y = (self.rows[e] + dy)[corner].astype(np.float64)
        ring_of = np.repeat(np.arange(len(self.ring_start)), self.ring_len)[corner]
        count = np.bincount(ring_of, minlength=len(self.ring_start))
        offset = np.zeros(len(count), np.int64)
        offset[1:] = np.cumsum(count)[:-1]
        return x, y, offset, count

    def _areas(self) -> np.ndarray:
        """Signed area of every ring (positive: an outline, as traced with the region on the right, y down)."""
        if not hasattr(self, "_area"):
            x, y, offset, count = self._corners()
            nxt = np.arange(1, len(x) + 1)
            last = offset + count - 1
            nxt[last] = offset
            self._area = np.add.reduceat(x * y[nxt] - x[nxt] * y, offset) / 2 if len(x) else np.zeros(0)
        return self._area

    def attach(self, comp: np.ndarray) -> None:
        """Give every ring its owner: the outline of the component of its first pixel."""
        rc = comp[self.first_row + 1, self.first_col + 1]
        outline = self._areas() > 0
        ext = np.flatnonzero(outline)
        by_comp = np.argsort(rc[ext], kind="stable")
        at = np.searchsorted(rc[ext][by_comp], rc)
        at = np.minimum(at, len(ext) - 1) if len(ext) else at
        self.owner = ext[by_comp][at] if len(ext) else np.zeros(len(rc), np.int64)

    def polygons(self) -> np.ndarray:
        """Shapely polygons, one per outline with its holes, in the outlines' order (their first pixels')."""
        n_rings = len(self.ring_start)
        if n_rings == 0:
            return np.empty(0, object)
        x, y, offset, count = self._corners()
        outline = self._areas() > 0
        # Rings are reversed and start where GEOS's polygonizer (plus a zero simplify) starts them, so that a
        # later simplification, which depends on the start, gives the same outlines: a hole at its top-left
        # corner, an outline at the corner before its top-left one (the east end of its first top run); holes
        # in raster order of their top-left corners.
        key = y * (x.max(initial=0) + 2) + x
        ring_sorted = np.lexsort((np.minimum.reduceat(key, offset), ~outline, self.owner))
        counts, starts = count[ring_sorted], offset[ring_sorted]
        top_left = _argmin_per_ring(key, offset, count)[ring_sorted]
        first = np.where(outline[ring_sorted], (top_left + 1) % counts, top_left)
        ring_off = np.zeros(len(counts) + 1, np.int64)
        ring_off[1:] = np.cumsum(counts + 1)
        total = int(ring_off[-1])
        pos = np.arange(total) - np.repeat(ring_off[:-1], counts + 1)  # position within the closed ring
        cnt = np.repeat(counts, counts + 1)
        # reversed from ``first``: first, first - 1, ..., first + 1, first (closed)
        idx = np.repeat(starts, counts + 1) + (np.repeat(first, counts + 1) - pos) % cnt
        coords = np.column_stack([x[idx], y[idx]])
        geom_off = np.append(np.flatnonzero(outline[ring_sorted]), len(ring_sorted))
        return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (ring_off, geom_off))


def _argmin_per_ring(values: np.ndarray, offset: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Position (within its ring) of each ring's smallest value; ``values`` flat, rings at ``offset``/``count``."""
    smallest = np.minimum.reduceat(values, offset)
    ring_of = np.repeat(np.arange(len(offset)), count)
    hit = np.flatnonzero(values == smallest[ring_of])
    firsts = np.full(len(offset), -1, np.int64)
    firsts[ring_of[hit][::-1]] = hit[::-1]  # the first hit of each ring wins
    return firsts - offset


@numba.njit(cache=True, nogil=True)
def _cycles(succ):  # pragma: no cover - compiled
    """For a permutation ``succ`` (edge -> next edge): per edge, the smallest index on its cycle and its distance
    from there along the cycle. Indices are visited in order, so the first unvisited one starts its cycle."""
    n = len(succ)
    ring = np.full(n, -1, np.int64)
    dist = np.zeros(n, np.int64)
    for i in range(n):
        if ring[i] >= 0:
            continue
        j, k = i, 0
        while ring[j] < 0:
            ring[j] = i
            dist[j] = k
            k += 1
            j = succ[j]
    return ring, dist


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the cycle walk: a set-up step spends it once, not a first run."""
    _cycles(np.array([1, 0], np.int64))


def _trace(padded: np.ndarray, components, background) -> _Rings:
    """Directed boundary edges, their successors and the rings they form (see the module docstring).
    ``components(values)`` gives the padded component ids, told the values that touch themselves at a corner."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    centre = padded[1:-1, 1:-1]
    keep = centre != background if background is not None else None
    pix, dirs = [], []
    for d, (dr, dc) in enumerate(((-1, 0), (0, 1), (1, 0), (0, -1))):  # the pixel across the top/right/bottom/left
        edge = centre != padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        if keep is not None:
            edge &= keep
        p = np.flatnonzero(edge)
        pix.append(p)
        dirs.append(np.full(len(p), d, np.int8))
    pix = np.concatenate(pix)
    dirs = np.concatenate(dirs)
    n = len(pix)
    rows, cols = pix // w, pix % w
    if n == 0:
        empty = np.zeros(0, np.int64)
        return _Rings(empty, empty, np.zeros(0, np.int8), empty, empty, empty)
    key = dirs.astype(np.int64) * (h * w) + pix  # sorted: by direction, then raster order

    # successor of every edge
    ahead = np.array(_AHEAD)[dirs]
    ahead_left = np.array(_AHEAD_LEFT)[dirs]
    v = centre.ravel()[pix]
    ar, ac = rows + ahead[:, 0], cols + ahead[:, 1]
    lr, lc = rows + ahead_left[:, 0], cols + ahead_left[:, 1]
    a_same = padded[ar + 1, ac + 1] == v
    al_same = padded[lr + 1, lc + 1] == v
    pinch = al_same & ~a_same
    comp = components(np.unique(v[pinch]))
    same_comp = comp[lr + 1, lc + 1] == comp[rows + 1, cols + 1]
    left = al_same & (a_same | same_comp)
    straight = a_same & ~left
    nr = np.where(left, lr, np.where(straight, ar, rows))
    nc = np.where(left, lc, np.where(straight, ac, cols))
    nd = np.where(left, (dirs + 3) % 4, np.where(straight, dirs, (dirs + 1) % 4))
    succ = np.searchsorted(key, nd.astype(np.int64) * (h * w) + nr * w + nc)

    ring, dist = _cycles(succ)  # ring of every edge (the smallest index on its cycle) and its position there
    start = ring == np.arange(n)
    starts = np.flatnonzero(start)
    ring_index = np.searchsorted(starts, ring)
    ring_len = np.bincount(ring_index, minlength=len(starts))
    ring_start = np.zeros(len(starts), np.int64)
    ring_start[1:] = np.cumsum(ring_len)[:-1]
    order = np.empty(n, np.int64)
    order[ring_start[ring_index] + dist] = np.arange(n)
    rings = _Rings(rows, cols, dirs, order, ring_start, ring_len)
    rings.attach(comp)
    return rings
