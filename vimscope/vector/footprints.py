"""Building footprints from pixel outlines: simplified by about a pixel, and squared where the shape is rectilinear.

A class region's outline runs along pixel edges, so a wall at 30° is a staircase. ``regularise`` simplifies it
(Douglas-Peucker, topology preserved, tolerance one output pixel) and tries ``orthogonalise``, which squares it: the
dominant direction comes from the minimum rotated rectangle, refined by the length-weighted mean of the edge
directions near it. When at least ``min_share`` of the outline's length runs within ``max_angle`` degrees of that
direction or its perpendicular, every ring (holes too) is rebuilt from straight runs: consecutive edges nearer one
axis form a run, each run becomes a line at its length-weighted mean offset, runs shorter than ``min_run`` fold
into their neighbours, and the corners are where consecutive runs meet, all at right angles. The squared shape is
kept only when it is a valid polygon with IoU >= ``min_iou`` against the outline; otherwise (a round or irregular
shape) the simplified outline is returned. Pure shapely and numpy, any planar coordinates.
"""

from __future__ import annotations

import numpy as np
import shapely

MAX_ANGLE = 15.0  # degrees an edge may deviate from the two axes and still count as square
# Share of the outline's length that must be square for the shape to be squared. Outlines in random directions
# have a third of their length within 15° of two perpendicular axes; the buildings model's outlines of real
# houses (Inria Austin) have 0.4-0.7, their rounded corners and ragged eaves counting against them, and the IoU
# test below is what keeps a round or ragged shape from being squared.
MIN_SHARE = 0.6
MIN_IOU = 0.9  # the squared shape must keep this IoU with the simplified one
SQUARE_TOLERANCE = 1.5  # the squaring starts from the outline simplified by this many times the tolerance


def regularise(geom, tolerance: float, min_hole: float = 0.0, **kwargs):
    """``geom`` (Polygon or MultiPolygon) simplified by ``tolerance`` and squared where rectilinear, each part on its
    own, holes smaller than ``min_hole`` (area) filled; ``kwargs`` go to ``orthogonalise`` (``min_run`` defaults to
    ``tolerance``).

    The squaring starts from a coarser simplification (``SQUARE_TOLERANCE`` x ``tolerance``): at one pixel,
    Douglas-Peucker leaves a staircase at 20-40° as a zig-zag of 30 vertices, at 1.5 pixels as the 4-6 vertices
    of the straight walls. A squared part must keep ``min_iou`` with the pixel outline itself.
    """
    min_iou = kwargs.get("min_iou", MIN_IOU)
    out = []
    for part in shapely.get_parts(geom):
        if min_hole > 0 and len(part.interiors):
            part = shapely.Polygon(part.exterior, [r for r in part.interiors if shapely.Polygon(r).area >= min_hole])
        simple = _simplified(part, tolerance)
        coarse = _simplified(part, SQUARE_TOLERANCE * tolerance)
        squared = orthogonalise(coarse, **{"min_run": tolerance, **kwargs})
        out.append(squared if squared is not coarse and _iou(squared, part) >= min_iou else simple)
    return out[0] if len(out) == 1 else shapely.MultiPolygon(out)


def _simplified(poly, tolerance: float):
    simple = shapely.simplify(poly, tolerance, preserve_topology=True)
    return simple if simple.geom_type == "Polygon" and not simple.is_empty and simple.is_valid else poly


def _iou(a, b) -> float:
    union = shapely.union(a, b).area
    return shapely.intersection(a, b).area / union if union > 0 else 0.0


def dominant_angle(poly: shapely.Polygon, max_angle: float = MAX_ANGLE) -> tuple[float, float]:
    """(direction in degrees in [0, 90), share of the outline's length within ``max_angle`` of it or of its
    perpendicular)."""
    vec, length = _edges(poly)
    angle = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 90.0
    rect = np.asarray(shapely.minimum_rotated_rectangle(poly).exterior.coords)
    side = rect[1] - rect[0] if np.hypot(*(rect[1] - rect[0])) > 0 else rect[2] - rect[1]
    theta = np.degrees(np.arctan2(side[1], side[0])) % 90.0
    near = np.abs(_deviation(angle, theta)) <= max_angle
    if near.any():  # the mean direction of the square edges: a quarter of the mean of 4x their angles
        phase = np.sum(length[near] * np.exp(4j * np.radians(angle[near])))
        theta = (np.degrees(np.angle(phase)) / 4.0) % 90.0
        near = np.abs(_deviation(angle, theta)) <= max_angle
    return float(theta), float(length[near].sum() / max(length.sum(), 1e-300))


def orthogonalise(
    poly: shapely.Polygon,
    *,
    max_angle: float = MAX_ANGLE,
    min_share: float = MIN_SHARE,
    min_iou: float = MIN_IOU,
    min_run: float = 0.0,
) -> shapely.Polygon:
    """``poly`` squared to right angles when it is rectilinear enough (see the module docstring), else itself."""
    if poly.geom_type != "Polygon" or poly.is_empty or poly.area <= 0:
        return poly
    theta, share = dominant_angle(poly, max_angle)
    if share < min_share:
        return poly
    origin = np.asarray(poly.centroid.coords[0])
    turn = np.radians(theta)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])  # aligned -> map (row vectors)

    def square(ring) -> np.ndarray | None:
        xy = (np.asarray(ring.coords)[:-1] - origin) @ rot  # map -> aligned
        corners = _square_ring(xy, min_run)
        return None if corners is None else corners @ rot.T + origin

    shell = square(poly.exterior)
    if shell is None:
        return poly
    holes = []
    for ring in poly.interiors:
        squared = square(ring)
        holes.append(np.asarray(ring.coords) if squared is None else squared)
    out = shapely.Polygon(shell, holes)
    if not out.is_valid or out.is_empty:
        return poly
    return out if _iou(out, poly) >= min_iou else poly


def _edges(poly: shapely.Polygon) -> tuple[np.ndarray, np.ndarray]:
    """Edge vectors and lengths of every ring of ``poly``."""
    vec = [np.diff(np.asarray(r.coords), axis=0) for r in (poly.exterior, *poly.interiors)]
    vec = np.concatenate(vec)
    return vec, np.hypot(vec[:, 0], vec[:, 1])


def _deviation(angle, theta: float):
    """Signed difference of directions modulo 90°, in [-45, 45)."""
    return (np.asarray(angle) - theta + 45.0) % 90.0 - 45.0


def _square_ring(xy: np.ndarray, min_run: float) -> np.ndarray | None:
    """The corners of an axis-aligned ring rebuilt from the runs of the ring ``xy`` (open, (n, 2)); None when fewer
    than four runs are left."""
    nxt = np.roll(xy, -1, axis=0)
    d = nxt - xy
    length = np.hypot(d[:, 0], d[:, 1])
    keep = length > 0
    xy, nxt, d, length = xy[keep], nxt[keep], d[keep], length[keep]
    if len(xy) < 4:
        return None
    vertical = np.abs(d[:, 1]) > np.abs(d[:, 0])
    mid = (xy + nxt) / 2
    offset = np.where(vertical, mid[:, 0], mid[:, 1])  # x of a vertical edge, y of a horizontal one
    start = int(np.flatnonzero(vertical != np.roll(vertical, 1))[0]) if (vertical != vertical[0]).any() else None
    if start is None:
        return None
    order = np.roll(np.arange(len(xy)), -start)
    runs: list[list[float]] = []  # [vertical, length, length-weighted offset sum]
    for i in order:
        if runs and bool(runs[-1][0]) == bool(vertical[i]):
            runs[-1][1] += length[i]
            runs[-1][2] += length[i] * offset[i]
        else:
            runs.append([float(vertical[i]), float(length[i]), float(length[i] * offset[i])])
    runs = _fold_short_runs(runs, min_run)
    if runs is None:
        return None
    corners = []
    for k, (vert, _, _) in enumerate(runs):
        here, after = runs[k], runs[(k + 1) % len(runs)]
        x = (here if vert else after)[2] / (here if vert else after)[1]
        y = (after if vert else here)[2] / (after if vert else here)[1]
        corners.append((x, y))
    return np.asarray(corners)


def _fold_short_runs(runs: list[list[float]], min_run: float) -> list[list[float]] | None:
    """Alternating runs with every run shorter than ``min_run`` folded away (its two neighbours, on the same
    axis, merge into one); None when fewer than four runs are left or they do not alternate."""
    if len(runs) % 2 or len(runs) < 4:
        return None
    while len(runs) > 4:
        k = min(range(len(runs)), key=lambda i: runs[i][1])
        if runs[k][1] >= min_run:
            break
        n = len(runs)
        before, after = (k - 1) % n, (k + 1) % n
        merged = [runs[before][0], runs[before][1] + runs[after][1], runs[before][2] + runs[after][2]]
        keep = [runs[i] for i in range(n) if i not in (before, k, after)]
        at = sum(1 for i in range(n) if i < before and i not in (k, after))
        runs = keep[:at] + [merged] + keep[at:]
    return runs
