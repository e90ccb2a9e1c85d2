"""Everything a run decides before its first tile, as one frozen ``RunPlan``.

``make_plan`` turns (slide, config) into the plan in small steps: the model and what it outputs (``probe``), the
tile and halo (clamped to the image), the memory the tile size and batch need (``pipeline.budget``: the batch is
lowered or the run refused before anything is read), the region and tissue mask, the tile plan (stripe-major
bands, chunk-aligned where the tile stride allows), the store layout and the keys that say what a resume or a
"done before" may reuse. Nothing in the plan changes while the run goes; what changes lives in ``pipeline.runstate``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vimscope.config import ClassSpec
from vimscope.errors import ConfigError, MissingPixelSizeError
from vimscope.pipeline.choice import choose_model, formats_for, wants_footprints
from vimscope.pipeline.config import PipelineConfig
from vimscope.pipeline.donekey import output_settings, region_overrides, settings_key
from vimscope.pipeline.model import LoadedModel, load_model
from vimscope.pipeline.outputs import OutputPaths, slide_stem
from vimscope.pipeline.record import run_key
from vimscope.vector import RegionMask, resolve_region

SEGMENTATION_OUTPUTS = ("classes", "probabilities", "geojson", "preview", "nuclei")
BAND_HEIGHT = 2048  # output rows per band when the config leaves it open
GPU_BATCH, CPU_BATCH = 32, 4  # tiles per forward pass when the config says 0 (auto)


@dataclass(frozen=True)
class StoreLayout:
    """What a run's OME-Zarr store holds: output grid, pixel size, classes and which maps are written."""

    out_shape: tuple[int, int]
    scale_um: float
    unit: str | None
    chunk: int
    classes: list
    extra_maps: list[str]
    image_channels: int | None  # None: no image layer
    probabilities: bool  # class probabilities and the extra maps (boundary, distance)
    publish_probabilities: bool  # False: computed for the instances only, left out of the finished store
    features: int | None  # feature channels, None: no feature map
    feature_stride: int
    instances: bool


@dataclass(frozen=True)
class RunPlan:
    """The decisions of one run. ``tiling`` is the tile plan; ``key`` decides what a resume may reuse and
    ``settings`` (with ``settings_key``) what a later run may count as done."""

    reader: Any
    config: PipelineConfig  # with the batch size resolved
    lm: LoadedModel
    tiling: Any  # tiling.plan.TilePlan
    paths: OutputPaths
    classes: tuple
    extra_maps: tuple[str, ...]
    sigmoid_maps: tuple[str, ...]
    tile: int
    halo: int
    pad: str
    segmentation: bool
    features: bool
    feature_stride: int
    mpp_out: float | None
    geometry: Any  # the region (shapely, level-0 px) or None
    roi: RegionMask | None
    mask: Any  # tissue mask or None
    layout: StoreLayout
    key: str
    settings: dict
    settings_key: str
    notes: tuple[str, ...] = ()
    formats: tuple[str, ...] = ("ome-zarr",)  # what is written: ``formats`` plus, with a CRS, ``geo_formats``
    model_choice: str | None = None  # why the model was chosen for this input (None: the config named it)
    footprints: bool = False  # class regions as map footprints with ids, ground areas and confidences

    @property
    def spec(self):
        return self.lm.spec

    @property
    def stem(self) -> str:
        return self.paths.stem

    @property
    def wants(self) -> frozenset[str]:
        return frozenset(self.config.outputs)


def aligned(core: int, chunk: int, target: int) -> int:
    """A stripe width / band height near ``target``, a multiple of the tile stride and, when the two share a
    common multiple no larger than ``target``, of the chunk too (then crop-mode stripes and bands share no chunk)."""
    lcm = core * chunk // math.gcd(core, chunk)
    unit = lcm if lcm <= target else core
    return max(unit, (target // unit) * unit)


def probe(lm: LoadedModel, tile: int, segmentation: bool, features: bool) -> dict:
    """Output names, channel counts and the feature stride, from one forward pass on a small blank input."""
    import torch

    from vimscope.pipeline.step import forward

    m = max(1, lm.spec.size_multiple)
    side = min(tile, max(2 * m, math.ceil(64 / m) * m))
    x = torch.zeros((1, lm.spec.in_chans, side, side), device=lm.device)
    out = forward(lm, x, segmentation, features)
    info = {k: int(v.shape[1]) if v.ndim == 4 else 1 for k, v in out.items()}
    if features:
        info["feature_stride"] = side // int(out["features"].shape[-1])
    return info


def sigmoid_maps(extra_maps) -> list[str]:
    """The extra maps a model returns before a sigmoid (the others are clamped to 0-1), as the instance step
    reads them."""
    from vimscope.instances import activation

    return [name for name in extra_maps if activation(name) == "sigmoid"]


def unit_of(meta) -> str | None:
    """The store's unit: micrometer for slides, meter for georeferenced rasters, None without a pixel size."""
    if meta.mpp is None:
        return None
    return "meter" if getattr(meta, "georeferenced", False) else "micrometer"


def tile_and_halo(config: PipelineConfig, lm: LoadedModel) -> tuple[int, int]:
    """The configured (else the model's) tile and halo, checked against each other and the model's stride."""
    spec = lm.spec
    tile = config.tile or spec.tile
    halo = config.halo if config.halo is not None else spec.halo
    if 2 * halo >= tile:
        raise ConfigError(f"tile ({tile}) must be larger than twice the halo ({halo})")
    if tile % max(1, spec.size_multiple):
        raise ConfigError(f"tile {tile} must be a multiple of the model's token stride {spec.size_multiple}")
    return tile, halo


def clamped_tile(tile: int, halo: int, out_shape: tuple[int, int], multiple: int) -> int:
    """The smallest tile (a multiple of the token stride) whose core covers the whole output, when ``tile`` is
    larger than that: a bigger tile only costs memory and time on blank padding."""
    m = max(1, multiple)
    whole = math.ceil((max(out_shape) + 2 * halo) / m) * m
    return min(tile, whole)


def _model_and_outputs(config: PipelineConfig, model) -> tuple[PipelineConfig, LoadedModel, dict]:
    """The loaded model, the config with the batch size resolved, and what the model outputs (``probe``)."""
    lm = load_model(config, model)
    if not config.batch_size:  # auto: a GPU needs many tiles per forward to be busy; a CPU gains nothing from it
        config = dataclasses.replace(config, batch_size=GPU_BATCH if lm.device.type == "cuda" else CPU_BATCH)
    want = set(config.outputs)
    segmentation = bool(want & set(SEGMENTATION_OUTPUTS))
    features = "features" in want
    if not segmentation and not features:
        raise ConfigError("nothing to compute: outputs need classes, probabilities or features")
    tile, _ = tile_and_halo(config, lm)
    found = probe(lm, tile, segmentation, features)
    if segmentation and "logits" not in found:
        raise ConfigError(f"model {lm.spec.name} gives no class maps (only {', '.join(found)}); use vimscope features")
    return config, lm, found


def _tissue_mask(reader, config: PipelineConfig):
    if not config.tissue:
        return None
    from vimscope.tissue import mask as tissue_mask

    meta = reader.meta
    if meta.mpp is None and not meta.georeferenced:  # no physical size: a mask of at most 2048 px a side
        return tissue_mask(reader, downsample=max(1.0, max(meta.dimensions) / 2048))
    return tissue_mask(reader, mpp=config.tissue_mpp)


def _tiling(reader, config: PipelineConfig, lm: LoadedModel, target_mpp, mask, geometry, notes: list[str]):
    """The tile plan, with the tile clamped to the image (``clamped_tile``); returns (plan, tile, halo)."""
    from vimscope.tiling.plan import plan_tiles

    tile, halo = tile_and_halo(config, lm)

    def plan_for(t: int):
        core = t - 2 * halo
        return plan_tiles(
            reader.meta,
            target_mpp=target_mpp,
            tile=t,
            halo=halo,
            mask=mask,
            region=geometry,
            stripe_width=aligned(core, config.chunk, config.stripe_width),
            band_height=config.band_height or aligned(core, config.chunk, BAND_HEIGHT),
        )

    plan = plan_for(tile)
    smaller = clamped_tile(tile, halo, plan.out_shape, lm.spec.size_multiple)
    if smaller < tile:
        h, w = plan.out_shape
        notes.append(f"tile {tile} px is larger than the {w} x {h} px image: tiles of {smaller} px cover it")
        tile, plan = smaller, plan_for(smaller)
    return plan, tile, halo


def make_plan(reader, config: PipelineConfig, out: Path, region=None, model=None) -> RunPlan:
    """Decide the run (see the module docstring); raises VimscopeError subclasses for unusable settings."""
    from vimscope.pipeline.budget import fit_batch

    meta = reader.meta
    formats = formats_for(config, meta)
    config, model_choice = choose_model(config, meta, model)
    config, lm, found = _model_and_outputs(config, model)
    spec, want = lm.spec, set(config.outputs)
    segmentation, features = bool(want & set(SEGMENTATION_OUTPUTS)), "features" in want
    target_mpp = config.target_mpp or spec.mpp
    if target_mpp is not None and meta.mpp is None:
        raise MissingPixelSizeError(
            f"{meta.path} has no pixel size and the run needs one (target {target_mpp} µm/px); pass --mpp"
        )
    notes = ([f"model {spec.name} ({model_choice})"] if model_choice else []) + list(lm.notes)
    geometry = resolve_region(
        region, roi=config.roi, roi_class=config.roi_class, exclude=config.exclude, image_size=meta.dimensions
    )
    mask = _tissue_mask(reader, config)
    tiling, tile, halo = _tiling(reader, config, lm, target_mpp, mask, geometry, notes)
    stride = found.get("feature_stride", 1)
    if features and (halo % stride or tile % stride or config.chunk % stride):
        raise ConfigError(f"features need tile, halo and chunk to be multiples of the token stride {stride}")
    config = fit_batch(config, lm, found, tile, notes)
    extra_maps = [k for k in found if k not in ("logits", "features", "feature_stride")] if segmentation else []
    n_classes = found.get("logits", 0)
    classes = list(spec.classes) or [ClassSpec(f"class {i}") for i in range(n_classes)]
    if segmentation and len(classes) != n_classes:
        raise ConfigError(f"model {spec.name} gives {n_classes} classes but its spec names {len(classes)}")
    instances = spec.output == "nuclei" and segmentation
    footprints = segmentation and wants_footprints(spec, meta, want, formats)
    mpp_out = meta.mpp * tiling.scale if meta.mpp else None
    layout = StoreLayout(
        out_shape=tiling.out_shape,
        scale_um=mpp_out or 1.0,
        unit=unit_of(meta),
        chunk=config.chunk,
        classes=classes,
        extra_maps=extra_maps,
        image_channels=3 if "image" in want and spec.in_chans == 3 else None,
        probabilities="probabilities" in want or instances or footprints,  # instances and footprints read them
        publish_probabilities="probabilities" in want,
        features=found.get("features") if features else None,
        feature_stride=stride if features else 16,
        instances=instances,
    )
    pad = config.pad or spec.pad_fill
    if not tiling.tiles:
        notes.append("no tile touches tissue or the region: the output stays empty (--no-tissue runs everything)")
    return RunPlan(
        reader=reader,
        config=config,
        lm=lm,
        tiling=tiling,
        paths=OutputPaths(Path(out), slide_stem(meta.path)),
        classes=tuple(classes),
        extra_maps=tuple(extra_maps),
        sigmoid_maps=tuple(sigmoid_maps(extra_maps)),
        tile=tile,
        halo=halo,
        pad=pad,
        segmentation=segmentation,
        features=features,
        feature_stride=stride,
        mpp_out=mpp_out,
        geometry=geometry,
        roi=RegionMask(geometry, tiling.scale) if geometry is not None else None,
        mask=mask,
        layout=layout,
        key=_resume_key(config, lm, tiling, pad),
        settings=output_settings(config),
        settings_key=settings_key(config, region_overrides(region)),
        notes=tuple(notes),
        formats=tuple(formats),
        model_choice=model_choice,
        footprints=footprints,
    )


def _resume_key(config: PipelineConfig, lm: LoadedModel, tiling, pad: str) -> str:
    """What a partial store must have been made with to be resumed: everything that changes its bytes."""
    return run_key(
        plan=tiling.to_json(),
        model=lm.spec.name,
        weights=config.weights,
        stitch=config.stitch,
        outputs=sorted(config.outputs),
        chunk=config.chunk,
        batch=config.batch_size,
        pad=[pad, config.pad_value],
        precision=str(lm.dtype),
        device=lm.device.type,
        decode=config.decode,  # nvjpeg and libjpeg differ in the last bits: a resume keeps the decoder
    )


def store_metadata(p: RunPlan) -> dict:
    """What the store's root metadata records about the run (and the done-key a later run compares)."""
    from vimscope import __version__

    spec = p.spec
    return {
        "model": spec.name,
        "trained": bool(spec.trained),
        "weights": p.config.weights or spec.weights,
        "license": spec.license,
        "tile": p.tile,
        "halo": p.halo,
        "stitch": p.config.stitch,
        "scale": p.tiling.scale,
        "read_level": p.tiling.read_level,
        "precision": str(p.lm.dtype).replace("torch.", ""),
        "vimscope": __version__,
        "settings_key": p.settings_key,
        "settings": p.settings,
    }
