"""Training targets derived from instance maps (numpy/scipy): the maps an instance model learns to predict.

- ``boundary``: pixels of an object within ``width`` px of another label (background or a touching object); the
  post-processing (``vimscope.instances``) seeds markers away from it, which separates touching nuclei.
- ``distance``: per object, the distance to its edge divided by its maximum (0-1; 1 at the object's centre).

``touching_gaps`` serves class models instead (buildings): the pixels where two objects meet, which a class
map must show as background for touching objects to come out as separate regions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["boundary_map", "distance_map", "instance_targets", "touching_gaps"]


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def boundary_map(instances: np.ndarray, width: int = 2) -> np.ndarray:
    """uint8 0/1: object pixels whose disk of radius ``width`` meets a different label (an inner edge band)."""
    inst = np.asarray(instances)
    if width <= 0:
        return np.zeros(inst.shape, np.uint8)
    footprint = _disk(width)
    hi = ndi.maximum_filter(inst, footprint=footprint, mode="nearest")
    lo = ndi.minimum_filter(inst, footprint=footprint, mode="nearest")
    return ((inst > 0) & ((hi != inst) | (lo != inst))).astype(np.uint8)


def touching_gaps(instances: np.ndarray, radius: int) -> np.ndarray:
    """bool: object pixels within ``radius`` px (Chebyshev) of a different object; background neighbours do not
    count. Carving them out of a class mask leaves a gap of about ``2 * radius`` px between touching objects."""
    inst = np.asarray(instances)
    if radius <= 0:
        return np.zeros(inst.shape, bool)
    size = 2 * radius + 1
    hi = ndi.maximum_filter(inst, size=size, mode="nearest")
    # background (0) must not count as a smaller neighbour: lift it above every label for the minimum
    lifted = np.where(inst > 0, inst, np.iinfo(inst.dtype).max if inst.dtype.kind in "iu" else np.inf)
    lo = ndi.minimum_filter(lifted, size=size, mode="nearest")
    return (inst > 0) & ((hi > inst) | (lo < inst))


def distance_map(instances: np.ndarray) -> np.ndarray:
    """float32 0-1: each object's Euclidean distance transform scaled by its own maximum."""
    inst = np.asarray(instances)
    out = np.zeros(inst.shape, np.float32)
    for k, sl in enumerate(ndi.find_objects(inst), 1):
        if sl is None:
            continue
        # pad by one so the object's edge at the crop border still counts as an edge
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        obj = inst[sl] == k
        d = ndi.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        peak = d.max()
        if peak > 0:
            out[sl][obj] = (d[obj] / peak).astype(np.float32)
    return out


def instance_targets(instances: np.ndarray, names: list[str], boundary_width: int = 2) -> dict[str, np.ndarray]:
    """The requested target maps (``"boundary"``, ``"distance"``) for one instance map."""
    out = {}
    for name in names:
        if name == "boundary":
            out[name] = boundary_map(instances, boundary_width)
        elif name == "distance":
            out[name] = distance_map(instances)
        else:
            raise ValueError(f"unknown instance target {name!r} (known: boundary, distance)")
    return out
