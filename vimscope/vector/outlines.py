"""Outlines of every 4-connected region of a label map, traced along pixel edges.

The fast path of ``polygons.label_polygons`` (``polygons.faces_reference`` is the plain one: GEOS polygonizes the
noded boundary linework). Pixel (r, c) covers [c, c+1) x [r, r+1); every unit edge between two different values
is a directed edge of the region on its right (top edges run east, right edges south, bottom edges west, left
edges north). At the end of each edge the ring goes on by the first of:

- left, onto the diagonal pixel ahead, when that pixel has the region's value and either the pixel straight ahead
  has it too or both belong to one component (a "pinch" inside one region: the outline and the hole it encloses
  then touch at that corner, OGC-valid);
- straight, along the pixel ahead (same value);
- right, around the same pixel.

So each ring holds one 4-connected component's edges. Edges are ordered by direction, then raster order; a ring
is named by its first edge and walked from there (``_walk``, compiled: one raster scan for the rings' first top
edges, then each ring edge by edge; array operations with a successor table and a cycle walk took 6-8 times
longer on a nuclei map). Corners (a change of direction) are the vertices; a ring's signed area tells an outline
(one per component) from a hole. Components are filled from a pixel only where needed: at a pinch, and for each
hole (which outline holds it).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import shapely

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
    if labels.size == 0:
        return np.empty(0, object), np.empty(0, labels.dtype)
    rings = _trace(np.ascontiguousarray(labels.view(np.uint8) if labels.dtype.kind == "b" else labels), background)
    return rings.polygons(), rings.values(labels)


class _Rings:
    """The traced rings of a map: edges (pixel, direction) ring after ring, each ring from its first edge in
    (direction, raster) order; ``owner`` (set by ``_trace``): per ring, the outline ring of its component."""

    def __init__(self, rows, cols, dirs, ring_start, ring_len):
        self.rows, self.cols, self.dirs = rows, cols, dirs  # per edge, ring after ring
        self.ring_start, self.ring_len = ring_start, ring_len  # offsets into the edges
        self.first_row, self.first_col = rows[ring_start], cols[ring_start]
        self.owner = np.arange(len(ring_start))

    def values(self, labels: np.ndarray) -> np.ndarray:
        """The value of every outline's region, in the outlines' order."""
        outline = self.areas() > 0
        return labels[self.first_row[outline], self.first_col[outline]]

    @functools.cached_property
    def _corners(self):
        """Per ring, its corners' (x, y) in order, as flat arrays plus per-ring offsets and counts."""
        d = self.dirs
        prev = np.empty_like(d)
        prev[1:] = d[:-1]
        prev[self.ring_start] = d[self.ring_start + self.ring_len - 1]  # a ring's first edge follows its last
        corner = d != prev
        dx = np.array([s[0] for s in _START])[d]
        dy = np.array([s[1] for s in _START])[d]
        x = (self.cols + dx)[corner].astype(np.float64)
        y = (self.rows + dy)[corner].astype(np.float64)
        ring_of = np.repeat(np.arange(len(self.ring_start)), self.ring_len)[corner]
        count = np.bincount(ring_of, minlength=len(self.ring_start))
        offset = np.zeros(len(count), np.int64)
        offset[1:] = np.cumsum(count)[:-1]
        return x, y, offset, count

    def areas(self) -> np.ndarray:
        """Signed area of every ring (positive: an outline, as traced with the region on the right, y down)."""
        if not hasattr(self, "_area"):
            x, y, offset, count = self._corners
            nxt = np.arange(1, len(x) + 1)
            last = offset + count - 1
            nxt[last] = offset
            self._area = np.add.reduceat(x * y[nxt] - x[nxt] * y, offset) / 2 if len(x) else np.zeros(0)
        return self._area

    def polygons(self) -> np.ndarray:
        """Shapely polygons, one per outline with its holes, in the outlines' order (their first pixels')."""
        n_rings = len(self.ring_start)
        if n_rings == 0:
            return np.empty(0, object)
        x, y, offset, count = self._corners
        outline = self.areas() > 0
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


def _trace(labels: np.ndarray, background) -> _Rings:
    """The rings of ``labels`` (see the module docstring): walked in compiled code (``_walk``), each ring's owner
    from the components of the pixels that need one (``_owners``)."""
    has_background = background is not None and _fits(background, labels.dtype)
    bg = labels.dtype.type(background if has_background else 0)
    seen = np.zeros(labels.shape, np.bool_)  # calloc: pages are touched only where rings run
    comp = np.zeros(labels.shape, np.int32)
    rows, cols, dirs, ring_len, n_comp = _walk(labels, bg, has_background, seen, comp)
    ring_start = np.zeros(len(ring_len), np.int64)
    ring_start[1:] = np.cumsum(ring_len)[:-1]
    rings = _Rings(rows, cols, dirs, ring_start, ring_len)
    rings.owner = _owners(labels, comp, n_comp, rings.first_row, rings.first_col, rings.areas() > 0)
    return rings


def _fits(value, dtype) -> bool:
    """Can a pixel of ``dtype`` hold ``value``? (If not, no pixel is background.)"""
    if dtype.kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(value) == int(value) and info.min <= int(value) <= info.max


# per direction (east, south, west, north as ints): the pixel across the edge, straight ahead, ahead-left
_ACROSS_R = np.array([-1, 0, 1, 0])
_ACROSS_C = np.array([0, 1, 0, -1])
_AHEAD_R = np.array([r for r, _ in _AHEAD])
_AHEAD_C = np.array([c for _, c in _AHEAD])
_LEFT_R = np.array([r for r, _ in _AHEAD_LEFT])
_LEFT_C = np.array([c for _, c in _AHEAD_LEFT])


@numba.njit(cache=True, nogil=True, inline="always")
def _same(labels, r, c, v):  # pragma: no cover - compiled
    return 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1] and labels[r, c] == v


@numba.njit(cache=True, nogil=True)
def _fill(labels, comp, r0, c0, cid, stack):  # pragma: no cover - compiled
    """Give the 4-connected component of pixel (r0, c0) (pixels of its value) the id ``cid`` in ``comp``."""
    h, w = labels.shape
    v = labels[r0, c0]
    comp[r0, c0] = cid
    stack[0] = r0 * w + c0
    top = 1
    while top:
        top -= 1
        r, c = stack[top] // w, stack[top] % w
        for k in range(4):
            rr, cc = r + _ACROSS_R[k], c + _ACROSS_C[k]
            if 0 <= rr < h and 0 <= cc < w and comp[rr, cc] == 0 and labels[rr, cc] == v:
                comp[rr, cc] = cid
                stack[top] = rr * w + cc
                top += 1


@numba.njit(cache=True, nogil=True)
def _grow(a, n):  # pragma: no cover - compiled
    out = np.empty(2 * n, a.dtype)
    out[:n] = a[:n]
    return out


@numba.njit(cache=True, nogil=True)
def _walk(labels, background, has_background, seen, comp):  # pragma: no cover - compiled
    """Every ring's edges (row, col, direction) in walk order, rings in the order of their first edge, and each
    ring's length; ``comp`` gets the components the pinches asked for (ids 1.., their count returned).

    Edges sort by direction, then raster order: every ring holds a top edge, so the first top edge of each ring
    in raster order (the first not ``seen``) starts it, and only top edges need marks."""
    h, w = labels.shape
    cap = 1024
    rows = np.empty(cap, np.int64)
    cols = np.empty(cap, np.int64)
    dirs = np.empty(cap, np.int8)
    ring_len = np.empty(64, np.int64)
    n = 0
    n_rings = 0
    n_comp = 0
    stack = np.empty(0, np.int64)
    for r0 in range(h):
        for c0 in range(w):
            v = labels[r0, c0]
            if (has_background and v == background) or (r0 > 0 and labels[r0 - 1, c0] == v) or seen[r0, c0]:
                continue  # no top edge, or one of a ring walked already
            r, c, d, start = r0, c0, 0, n
            while True:
                if n == cap:
                    rows, cols, dirs = _grow(rows, n), _grow(cols, n), _grow(dirs, n)
                    cap *= 2
                rows[n], cols[n], dirs[n] = r, c, d
                n += 1
                if d == 0:
                    seen[r, c] = True
                ar, ac = r + _AHEAD_R[d], c + _AHEAD_C[d]
                lr, lc = r + _LEFT_R[d], c + _LEFT_C[d]
                a_same = _same(labels, ar, ac, v)
                left = _same(labels, lr, lc, v)
                if left and not a_same:  # a pinch: on only if both pixels are one component
                    if comp[r, c] == 0:
                        if len(stack) == 0:
                            stack = np.empty(h * w, np.int64)
                        n_comp += 1
                        _fill(labels, comp, r, c, n_comp, stack)
                    left = comp[lr, lc] == comp[r, c]
                if left:
                    r, c, d = lr, lc, (d + 3) % 4
                elif a_same:
                    r, c = ar, ac
                else:
                    d = (d + 1) % 4
                if r == r0 and c == c0 and d == 0:
                    break
            if n_rings == len(ring_len):
                ring_len = _grow(ring_len, n_rings)
            ring_len[n_rings] = n - start
            n_rings += 1
    return rows[:n].copy(), cols[:n].copy(), dirs[:n].copy(), ring_len[:n_rings].copy(), n_comp


@numba.njit(cache=True, nogil=True)
def _owners(labels, comp, n_comp, first_row, first_col, outline):  # pragma: no cover - compiled
    """Per ring, the outline ring of its component: itself for an outline (one per component), for a hole the
    outline whose component holds the hole's first pixel (components filled where a hole needs one)."""
    n = len(outline)
    owner = np.arange(n)
    stack = np.empty(0, np.int64)
    for i in range(n):
        if not outline[i] and comp[first_row[i], first_col[i]] == 0:
            if len(stack) == 0:
                stack = np.empty(labels.shape[0] * labels.shape[1], np.int64)
            n_comp += 1
            _fill(labels, comp, first_row[i], first_col[i], n_comp, stack)
    outline_of = np.full(n_comp + 1, -1, np.int64)
    for i in range(n):
        if outline[i]:
            outline_of[comp[first_row[i], first_col[i]]] = i
    for i in range(n):
        if not outline[i]:
            owner[i] = outline_of[comp[first_row[i], first_col[i]]]
    return owner


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the walk: a set-up step spends it once, not a first run."""
    for dtype in (np.uint8, np.uint32, np.int64):
        trace_regions(np.eye(3, dtype=dtype), 0)
