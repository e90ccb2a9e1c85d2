"""The labelled image every dataset loader returns, and the registry of loaders by ``kind``.

A loader turns one ``data:`` entry of a training config into a list of ``LabelledImage`` held in memory: the
labelled sets here are small (tens of megapixels) and random tiles are cut from them many times per epoch.
Label maps follow one convention whatever the source: ``classes`` uint8 with 0 = background and
``IGNORE_INDEX`` (255) = unlabelled, ``instances`` int32 with 0 = background and 1..N = objects.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimscope.config import from_dict
from vimscope.errors import ConfigError
from vimscope.train.metrics import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "LabelledImage", "LoadContext", "LOADERS", "load_source", "load_sources", "resolve"]


@dataclass
class LoadContext:
    """What a loader may need beyond its own options: where relative paths start, the model's resolution
    (slides are read at it rather than at full resolution)."""

    base: Path | None = None
    target_mpp: float | None = None


@dataclass
class LabelledImage:
    """One image with its labels, in memory. ``group`` (organ, site) lets a split spread over groups."""

    name: str
    image: np.ndarray  # (h, w, c) uint8, or uint16 for multi-band rasters
    classes: np.ndarray | None = None  # (h, w) uint8, 0 background, IGNORE_INDEX unlabelled
    instances: np.ndarray | None = None  # (h, w) int32, 0 background
    mpp: float | None = None  # µm/px (or CRS units/px for georeferenced rasters)
    group: str = ""
    class_names: list[str] = field(default_factory=lambda: ["background", "foreground"])
    source: str = ""

    def __post_init__(self) -> None:
        if self.image.ndim == 2:
            self.image = self.image[:, :, None]
        h, w = self.image.shape[:2]
        for label in ("classes", "instances"):
            arr = getattr(self, label)
            if arr is not None and arr.shape != (h, w):
                raise ConfigError(f"{self.name}: {label} map {arr.shape} does not match image {(h, w)}")
        if self.classes is None and self.instances is not None:
            self.classes = (self.instances > 0).astype(np.uint8)
        if self.classes is None:
            raise ConfigError(f"{self.name}: no labels")

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[:2]

    @property
    def labelled_fraction(self) -> float:
        return float((self.classes != IGNORE_INDEX).mean())


# kind -> "module:config_class:loader_function"; loaders import their heavy readers lazily.
LOADERS = {
    "folder": "vimscope.train.datasets.folder:FolderSource:load_folder",
    "slides": "vimscope.train.datasets.slides:SlideSource:load_slides",
    "monuseg": "vimscope.train.datasets.monuseg:MoNuSegSource:load_monuseg",
    "miccai2015": "vimscope.train.datasets.nuclei:Miccai2015Source:load_miccai2015",
    "cryonuseg": "vimscope.train.datasets.nuclei:CryoNuSegSource:load_cryonuseg",
    "vector": "vimscope.train.datasets.geo:VectorSource:load_vector",
    "raster_mask": "vimscope.train.datasets.geo:RasterMaskSource:load_raster_mask",
    "web_tiles": "vimscope.train.datasets.webtiles:WebTilesSource:load_web_tiles",
    "pack": "vimscope.train.pack:PackSource:load_pack",
}


def resolve(path: str | Path, ctx: LoadContext | Path | None) -> Path:
    """A config path: ``~`` expanded, relative paths taken from the config file's folder."""
    base = ctx.base if isinstance(ctx, LoadContext) else ctx
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else (base / p)


def load_source(entry: dict, ctx: LoadContext | None = None) -> list[LabelledImage]:
    """Load one ``data:`` entry (a mapping with ``kind`` and that kind's options)."""
    if not isinstance(entry, dict) or "kind" not in entry:
        raise ConfigError(f"data entry needs a 'kind' (one of {', '.join(sorted(LOADERS))}): {entry!r}")
    options = dict(entry)
    kind = options.pop("kind")
    if kind not in LOADERS:
        raise ConfigError(f"unknown data kind {kind!r} (known: {', '.join(sorted(LOADERS))})")
    module, cls_name, fn_name = LOADERS[kind].split(":")
    mod = importlib.import_module(module)
    config = from_dict(getattr(mod, cls_name), options, prefix=f"data[{kind}].")
    images = getattr(mod, fn_name)(config, ctx or LoadContext())
    if not images:
        raise ConfigError(f"data entry {kind} ({options.get('path', '')}) found no labelled images")
    for im in images:
        im.source = im.source or kind
    return images


def load_sources(entries: list[dict], ctx: LoadContext | None = None) -> list[LabelledImage]:
    """Load every entry; names must be unique and all images must share one class list."""
    images: list[LabelledImage] = []
    for entry in entries:
        images.extend(load_source(entry, ctx))
    names = [im.name for im in images]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"image names must be unique across data entries: {dup[0]!r} appears twice")
    classes = {tuple(im.class_names) for im in images}
    if len(classes) > 1:
        raise ConfigError(f"data entries disagree on classes: {sorted(classes)}")
    return images
