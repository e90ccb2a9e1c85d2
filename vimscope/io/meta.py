"""What a reader knows about an image before reading any pixel: one plain dataclass, JSON-friendly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class SlideMeta:
    """Geometry, pixel size and pixel format of one image, level 0 first.

    ``mpp`` is µm per level-0 pixel for slides, or CRS units per pixel when ``crs``/``transform`` are set
    (then it is the mean of |dx| and |dy| of the affine transform). Levels after the file's own ones are
    computed by the reader (``computed_levels`` of them), so thumbnails never need all of level 0.
    """

    path: str
    backend: str
    vendor: str | None = None
    level_dimensions: list[tuple[int, int]] = field(default_factory=list)  # (width, height) per level
    level_downsamples: list[float] = field(default_factory=list)
    mpp: float | None = None
    objective_power: float | None = None
    crs: str | None = None  # "EPSG:32618"
    transform: tuple[float, float, float, float, float, float] | None = None  # GDAL (x0, dx, rx, y0, ry, dy)
    bands: int = 3
    band_names: list[str] | None = None
    dtype: str = "uint8"
    nodata: float | None = None
    has_alpha: bool = False
    tile_size: tuple[int, int] | None = None  # native (width, height) of a tile or strip at level 0
    associated: list[str] = field(default_factory=list)
    computed_levels: int = 0
    stretch: list[tuple[float, float]] | None = None  # (low, high) per displayed band, set by read_rgb
    # extensions beyond the contract
    is_rgb: bool = True  # bands 0-2 are display colours (brightfield, aerial RGB); otherwise read_rgb stretches
    rgb_bands: list[int] = field(default_factory=lambda: [0, 1, 2])  # the bands read_rgb shows as R, G, B
    alpha_band: int | None = None
    mpp_source: str | None = None  # "file", "override" or None (unknown)
    crs_name: str | None = None  # human-readable CRS name from pyproj
    crs_units: str | None = None  # unit of the CRS axes ("metre", "degree"): the unit of mpp when georeferenced
    file_size: int | None = None

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def native_levels(self) -> int:
        """Levels stored in the file (the rest are computed)."""
        return self.level_count - self.computed_levels

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None or self.transform is not None

    def level_mpp(self, level: int) -> float | None:
        return None if self.mpp is None else self.mpp * self.level_downsamples[level]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["level_dimensions"] = [list(map(int, wh)) for wh in self.level_dimensions]
        d["level_downsamples"] = [float(x) for x in self.level_downsamples]
        d["transform"] = None if self.transform is None else [float(x) for x in self.transform]
        d["tile_size"] = None if self.tile_size is None else list(self.tile_size)
        d["stretch"] = None if self.stretch is None else [[float(a), float(b)] for a, b in self.stretch]
        d["level_count"] = self.level_count
        d["georeferenced"] = self.georeferenced
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlideMeta:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["level_dimensions"] = [tuple(int(a) for a in wh) for wh in kw.get("level_dimensions", [])]
        for key in ("transform", "tile_size"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("stretch") is not None:
            kw["stretch"] = [tuple(s) for s in kw["stretch"]]
        return cls(**kw)


_RGB_NAMES = (("b04", "b4", "red", "r"), ("b03", "b3", "green", "g"), ("b02", "b2", "blue", "b"))


def choose_rgb_bands(names: list[str] | None, bands: int, is_rgb: bool, alpha_band: int | None) -> list[int]:
    """Bands shown as R, G, B: natural colour where names tell (Sentinel-2 B04/B03/B02, red/green/blue)."""
    if is_rgb:
        return [0, 1, 2]
    if names:
        lowered = [n.lower() for n in names]
        picked = []
        for choices in _RGB_NAMES:
            found = next((lowered.index(c) for c in choices if c in lowered), None)
            picked.append(found)
        if all(p is not None for p in picked):
            return picked
    data_bands = [b for b in range(bands) if b != alpha_band]
    return data_bands[:3] if len(data_bands) >= 3 else data_bands
