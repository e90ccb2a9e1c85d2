"""The instance step's settings: a model's ``postprocess`` block (its contract), validated.

Thresholds are probabilities (0-1); ``min_area`` / ``max_size`` are output pixels (``max_size``, the largest
object's extent, is the margin banded runs need). The physical limits (``min_area_um2``, ``max_area_um2``) and
``min_probability`` say what the model's objects can be: a "nucleus" of 100,000 µm² over blank glass, or one whose
mean class probability is 1e-4, is not one. They apply where the output's pixel size in µm is known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from vimscope.errors import ConfigError


@dataclass
class InstanceParams:
    """Thresholds in probability units (0-1), sizes in output pixels or µm²; from a model's ``postprocess`` block."""

    nucleus_threshold: float = 0.5
    boundary_threshold: float = 0.5
    distance_threshold: float = 0.3
    min_marker_area: int = 4
    min_area: int = 16
    max_size: int = 64  # the largest object (px): the margin banded runs need
    connectivity: int = 1
    min_area_um2: float | None = None  # objects smaller than this (µm²) are dropped
    max_area_um2: float | None = None  # objects larger than this (µm²) are dropped
    min_probability: float | None = None  # objects whose mean class probability is lower are dropped

    @classmethod
    def from_dict(cls, data: dict | None) -> InstanceParams:
        data = dict(data or {})
        data.pop("type", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown postprocess key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        params = cls(**data)
        params.validate()
        return params

    def validate(self) -> None:
        if not 0 <= self.nucleus_threshold <= 1 or not 0 <= self.boundary_threshold <= 1:
            raise ConfigError("postprocess thresholds must lie between 0 and 1")
        if self.min_probability is not None and not 0 <= self.min_probability <= 1:
            raise ConfigError("postprocess min_probability must lie between 0 and 1")
        lo = 0.0 if self.min_area_um2 is None else self.min_area_um2
        hi = float("inf") if self.max_area_um2 is None else self.max_area_um2
        if not 0 <= lo <= hi or hi <= 0:
            raise ConfigError("postprocess areas need 0 <= min_area_um2 <= max_area_um2 (µm²)")

    def area_range(self, mpp: float | None) -> tuple[int, int | None]:
        """(smallest, largest or None) object area in output pixels at ``mpp`` µm per output pixel; without a
        pixel size only ``min_area`` applies."""
        lo, hi = max(1, int(self.min_area)), None
        if mpp:
            px = float(mpp) ** 2
            if self.min_area_um2 is not None:
                lo = max(lo, int(-(-self.min_area_um2 // px)))  # ceil: at least that many µm²
            if self.max_area_um2 is not None:
                hi = int(self.max_area_um2 // px)
        return lo, hi

    def to_dict(self) -> dict:
        return asdict(self)
