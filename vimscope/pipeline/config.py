"""One run's settings as data: ``PipelineConfig``, loaded from the packaged ``default.yaml`` plus overrides.

Every key is checked (``vimscope.config.from_dict``): an unknown key or a wrong type is a ``ConfigError`` naming
it. ``None`` means "from the model's IO contract" (tile, halo, resolution, padding).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from vimscope.config import from_dict, load_yaml, packaged_config
from vimscope.errors import ConfigError

DEFAULT_MODEL = "vim_tiny_nuclei"  # shipped in vimscope/weights; a run on an untrained model says so
OUTPUTS = ("image", "classes", "probabilities", "features", "nuclei", "geojson", "preview", "summary")
FORMATS = ("ome-zarr", "ome-tiff", "geotiff", "gpkg")  # gpkg: the class regions as a GeoPackage (needs a CRS)
STITCH_MODES = ("crop", "cosine", "gaussian")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
DECODES = ("auto", "cpu", "gpu")
IMAGE_CODECS = ("blosc", "jpeg")  # the OME-Zarr image copy's: writers.omezarr.codecs says who reads which
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class PipelineConfig:
    """Settings of ``iter_run``; see ``vimscope/configs/pipelines/default.yaml`` for what each key means."""

    model: str | None = None
    weights: str | None = None
    mpp: float | None = None
    target_mpp: float | None = None
    tile: int | None = None
    halo: int | None = None
    batch_size: int = 0
    device: str = "auto"
    precision: str = "auto"
    cuda_graphs: bool = True
    tta: bool = False
    stitch: str = "crop"
    outputs: list[str] = field(default_factory=lambda: ["image", "classes", "geojson", "preview", "summary"])
    formats: list[str] = field(default_factory=lambda: ["ome-zarr"])
    geo_formats: list[str] = field(default_factory=lambda: ["geotiff", "gpkg"])
    workers: int = 0
    prefetch: int = 2
    decode: str = "auto"
    tissue: bool = True
    tissue_mpp: float | None = None
    pad: str | None = None
    pad_value: int = 255
    stripe_width: int = 131072
    band_height: int | None = None
    chunk: int = 512
    image_codec: str = "blosc"
    overwrite: bool = False
    strict: bool = False
    roi: str | None = None
    roi_class: str | None = None
    exclude: str | None = None

    def validate(self) -> None:
        def bad(msg: str):
            raise ConfigError(msg)

        if self.model is not None and self.weights is not None:
            bad("give either model or weights, not both")
        for name in ("mpp", "target_mpp"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                bad(f"{name} must be a positive number of µm (or map units) per pixel, not {v}")
        if self.tile is not None and not 16 <= self.tile <= 8192:
            bad(f"tile must be between 16 and 8192 pixels, not {self.tile}")
        if self.halo is not None and self.halo < 0:
            bad(f"halo (overlap) must be >= 0, not {self.halo}")
        if self.tile is not None and self.halo is not None and 2 * self.halo >= self.tile:
            bad(f"tile ({self.tile}) must be larger than twice the halo ({self.halo})")
        if self.batch_size < 0:
            bad(f"batch_size must be >= 1 (0: auto), not {self.batch_size}")
        if not _DEVICE.match(self.device):
            bad(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.precision not in PRECISIONS:
            bad(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.stitch not in STITCH_MODES:
            bad(f"stitch must be one of {', '.join(STITCH_MODES)}, not {self.stitch!r}")
        for o in self.outputs:
            if o not in OUTPUTS:
                bad(f"unknown output {o!r} (known: {', '.join(OUTPUTS)})")
        for f in [*self.formats, *self.geo_formats]:
            if f not in FORMATS:
                bad(f"unknown format {f!r} (known: {', '.join(FORMATS)})")
        if self.decode not in DECODES:
            bad(f"decode must be one of {', '.join(DECODES)}, not {self.decode!r}")
        if self.workers < 0 or self.prefetch < 1:
            bad("workers must be >= 0 and prefetch >= 1")
        if self.pad not in (None, "reflect", "constant"):
            bad(f"pad must be reflect or constant, not {self.pad!r}")
        if not 0 <= self.pad_value <= 255:
            bad(f"pad_value must be 0-255, not {self.pad_value}")
        if self.chunk < 64 or self.chunk % 16:
            bad(f"chunk must be a multiple of 16 and at least 64, not {self.chunk}")
        if self.image_codec not in IMAGE_CODECS:
            bad(f"image_codec must be one of {', '.join(IMAGE_CODECS)}, not {self.image_codec!r}")
        if self.stripe_width < self.chunk:
            bad(f"stripe_width ({self.stripe_width}) must be at least one chunk ({self.chunk})")
        if self.band_height is not None and self.band_height < 1:
            bad(f"band_height must be positive, not {self.band_height}")
        if self.tissue_mpp is not None and not self.tissue_mpp > 0:
            bad("tissue_mpp must be positive")

    # construction -----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> PipelineConfig:
        """The packaged defaults, then the YAML file ``path`` (any subset of keys), then ``overrides``.

        Overrides that are ``None`` are ignored, so CLI options left unset keep the file's values.
        """
        data = load_yaml(packaged_config("pipelines", "default"))
        if path is not None:
            data.update(load_yaml(path))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return from_dict(cls, data)

    @classmethod
    def from_dict(cls, data: dict | None) -> PipelineConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> PipelineConfig:
        return from_dict(type(self), {**self.to_dict(), **changes})

    def digest(self, *keys: str) -> str:
        """A short hash of the chosen settings (all when none given)."""
        d = self.to_dict()
        if keys:
            d = {k: d[k] for k in keys}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
