"""Instance labels from a nuclei model's maps: marker-controlled watershed (scikit-image).

Maps (float 0-1 or uint8 0-255, all (h, w)):
- ``nucleus``: probability of being inside a nucleus (required; foreground = nucleus > ``nucleus_threshold``);
- ``boundary``: probability of a nucleus boundary (optional; markers avoid it, the flood climbs it);
- ``distance``: distance to the nucleus edge, normalised 0-1 (optional; markers are its plateaus, the flood
  descends from them).

Markers are the connected cores: foreground & boundary < ``boundary_threshold`` & distance > ``distance_threshold``
(whichever maps exist). Everything is local: an object's result depends only on the maps within its own
foreground blob, which is what lets the banded runner match a whole-image run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from vimscope.errors import ConfigError


@dataclass
class InstanceParams:
    """Thresholds in probability units (0-1) and sizes in output pixels; from a model's ``postprocess`` block."""

    nucleus_threshold: float = 0.5
    boundary_threshold: float = 0.5
    distance_threshold: float = 0.3
    min_marker_area: int = 4
    min_area: int = 16
    max_size: int = 64  # the largest object (px): the margin banded runs need
    connectivity: int = 1

    @classmethod
    def from_dict(cls, data: dict | None) -> InstanceParams:
        data = dict(data or {})
        data.pop("type", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown postprocess key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        params = cls(**data)
        if not 0 <= params.nucleus_threshold <= 1 or not 0 <= params.boundary_threshold <= 1:
            raise ConfigError("postprocess thresholds must lie between 0 and 1")
        return params

    def to_dict(self) -> dict:
        return asdict(self)


def _as_unit(a: np.ndarray) -> np.ndarray:
    """Probabilities as float32 in 0-1 whatever their storage (uint8 maps are 0-255)."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32, copy=False)


def _compare(a: np.ndarray, op, threshold: float) -> np.ndarray:
    """``op(_as_unit(a), threshold)``; for uint8 maps through a 256-entry table (no float copy of the map)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return op(_as_unit(np.arange(256, dtype=np.uint8)), threshold)[a]
    return op(_as_unit(a), threshold)


def _elevation(maps: dict[str, np.ndarray]) -> np.ndarray:
    """What the flood climbs: -distance, else boundary - nucleus, else -nucleus. For a uint8 distance map its
    reversal 255 - d orders pixels exactly as -d / 255 does (ties included), so the flood is the same."""
    if "distance" in maps:
        d = np.asarray(maps["distance"])
        return 255 - d if d.dtype == np.uint8 else -_as_unit(d)
    if "boundary" in maps:
        return _as_unit(maps["boundary"]) - _as_unit(maps["nucleus"])
    return -_as_unit(maps["nucleus"])


def _keep_large(labels: np.ndarray, at: np.ndarray, min_area: int, *, sequential: bool = False) -> np.ndarray:
    """Zero, in place, the labels with fewer than ``min_area`` pixels (labels are already connected components);
    with ``sequential`` also renumber the rest 1..n in the order of their old ids (as ``relabel_sequential``
    does). ``at``: flat indices of every labelled pixel (more are fine): one lookup there, no pass over the map."""
    flat = labels.reshape(-1)
    values = flat[at]
    sizes = np.bincount(values)
    keep = sizes >= min_area
    keep[0] = False
    if keep[1:].all():
        return labels
    table = np.where(keep, np.cumsum(keep) if sequential else np.arange(len(sizes)), 0)
    flat[at] = table[values]
    return labels


def label_instances(maps: dict[str, np.ndarray], params: InstanceParams | dict | None = None) -> np.ndarray:
    """Instance ids (uint32, 0 = background, 1..n numbered in raster order of their markers)."""
    import operator

    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    if not isinstance(params, InstanceParams):
        params = InstanceParams.from_dict(params)
    if "nucleus" not in maps:
        raise ValueError(f"label_instances needs a 'nucleus' map (got {', '.join(maps)})")
    foreground = _compare(maps["nucleus"], operator.gt, params.nucleus_threshold)
    markers = foreground.copy()
    if "boundary" in maps:
        markers &= _compare(maps["boundary"], operator.lt, params.boundary_threshold)
    if "distance" in maps:
        markers &= _compare(maps["distance"], operator.gt, params.distance_threshold)
    structure = ndi.generate_binary_structure(2, params.connectivity)
    seeds = np.flatnonzero(markers)
    markers, _ = ndi.label(markers, structure=structure)
    if params.min_marker_area > 1 and len(seeds):
        markers = _keep_large(markers, seeds, params.min_marker_area)
    if not len(seeds) or not markers.reshape(-1)[seeds].any():
        return np.zeros(foreground.shape, np.uint32)
    labels = watershed(_elevation(maps), markers, mask=foreground, connectivity=params.connectivity)
    labels = _keep_large(labels, np.flatnonzero(foreground), max(1, params.min_area), sequential=True)
    return labels.view(np.uint32) if labels.dtype == np.int32 else labels.astype(np.uint32, copy=False)
