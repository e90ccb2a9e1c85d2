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


def _drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Zero the labels with fewer than ``min_area`` pixels (labels are already connected components)."""
    sizes = np.bincount(labels.ravel())
    small = sizes < min_area
    small[0] = False
    if small.any():
        labels = labels.copy()
        labels[small[labels]] = 0
    return labels


def label_instances(maps: dict[str, np.ndarray], params: InstanceParams | dict | None = None) -> np.ndarray:
    """Instance ids (uint32, 0 = background, 1..n numbered in raster order of their markers)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential, watershed

    if not isinstance(params, InstanceParams):
        params = InstanceParams.from_dict(params)
    if "nucleus" not in maps:
        raise ValueError(f"label_instances needs a 'nucleus' map (got {', '.join(maps)})")
    nucleus = _as_unit(maps["nucleus"])
    foreground = nucleus > params.nucleus_threshold
    markers = foreground.copy()
    elevation = -nucleus
    if "boundary" in maps:
        boundary = _as_unit(maps["boundary"])
        markers &= boundary < params.boundary_threshold
        elevation = boundary - nucleus
    if "distance" in maps:
        distance = _as_unit(maps["distance"])
        markers &= distance > params.distance_threshold
        elevation = -distance
    structure = ndi.generate_binary_structure(2, params.connectivity)
    markers, _ = ndi.label(markers, structure=structure)
    if params.min_marker_area > 1:
        markers = _drop_small(markers, params.min_marker_area)
    if not markers.any():
        return np.zeros(nucleus.shape, np.uint32)
    labels = watershed(elevation, markers, mask=foreground, connectivity=params.connectivity)
    if params.min_area > 1:
        labels = _drop_small(labels, params.min_area)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32, copy=False)
