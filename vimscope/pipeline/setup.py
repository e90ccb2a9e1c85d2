"""Everything a run decides before its first tile: model, resolution, tiles, region, outputs, what to resume.

``prepare`` turns (slide, config) into a ``RunSetup``: the loaded model and its probed outputs, the tile plan
(stripe-major bands, chunk-aligned where the tile stride allows), the OME-Zarr writer (resumed when the partial
store was made with the same settings), the resume record and the stitchers, which already know the tiles that
must (still) run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vimscope.config import ClassSpec
from vimscope.errors import ConfigError, MissingPixelSizeError
from vimscope.pipeline.config import PipelineConfig
from vimscope.pipeline.model import LoadedModel, load_model
from vimscope.pipeline.record import ResumeRecord, run_key
from vimscope.pipeline.regions import RegionMask, resolve_region
from vimscope.pipeline.step import forward
from vimscope.pipeline.stitching import RunStitcher
from vimscope.tiling.loader import TileGeometry

SEGMENTATION_OUTPUTS = ("classes", "probabilities", "geojson", "preview", "nuclei")
BAND_HEIGHT = 2048  # output rows per band when the config leaves it open
GPU_BATCH, CPU_BATCH = 32, 4  # tiles per forward pass when the config says 0 (auto)


def slide_stem(path: str | Path) -> str:
    name = Path(str(path).rstrip("/")).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def output_paths(out: Path, stem: str) -> dict[str, Path]:
    return {
        "zarr": out / f"{stem}.ome.zarr",
        "summary": out / f"{stem}.summary.json",
        "preview": out / f"{stem}.preview.png",
        "geojson": out / f"{stem}.geojson",
    }


def aligned(core: int, chunk: int, target: int) -> int:
    """A stripe width / band height near ``target``, a multiple of the tile stride and, when the two share a
    common multiple no larger than ``target``, of the chunk too (then crop-mode stripes and bands share no chunk)."""
    lcm = core * chunk // math.gcd(core, chunk)
    unit = lcm if lcm <= target else core
    return max(unit, (target // unit) * unit)


def probe(lm: LoadedModel, tile: int, segmentation: bool, features: bool) -> dict:
    """Output names, channel counts and the feature stride, from one forward pass on a small blank input."""
    m = max(1, lm.spec.size_multiple)
    side = min(tile, max(2 * m, math.ceil(64 / m) * m))
    x = torch.zeros((1, lm.spec.in_chans, side, side), device=lm.device)
    out = forward(lm, x, segmentation, features)
    info = {k: int(v.shape[1]) if v.ndim == 4 else 1 for k, v in out.items()}
    if features:
        info["feature_stride"] = side // int(out["features"].shape[-1])
    return info


@dataclass
class RunSetup:
    reader: Any
    config: PipelineConfig
    lm: LoadedModel
    plan: Any
    geom: TileGeometry
    writer: Any
    record: ResumeRecord
    stitcher: RunStitcher
    paths: dict[str, Path]
    stem: str
    classes: list
    extra_maps: list[str]
    tile: int
    halo: int
    pad: str
    segmentation: bool
    features: bool
    mpp_out: float | None
    geometry: Any
    roi: RegionMask | None
    mask: Any
    needed: set[int]
    t0: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)
    # filled in by the tile loop
    timings: dict = field(default_factory=dict)
    tiles_run: int = 0
    peak_open: int = 0
    decode: str = "reader"  # what decoded the tiles: reader, cpu-tiles or nvjpeg (pipeline.engine.make_loader)
    followers: Any = None  # jobs that follow the loop down the output (pipeline.follow.Followers)

    @property
    def spec(self):
        return self.lm.spec


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
    features: int | None  # feature channels, None: no feature map
    feature_stride: int
    instances: bool


def _tile_and_halo(config: PipelineConfig, lm: LoadedModel) -> tuple[int, int]:
    spec = lm.spec
    tile = config.tile or spec.tile
    halo = config.halo if config.halo is not None else spec.halo
    if 2 * halo >= tile:
        raise ConfigError(f"tile ({tile}) must be larger than twice the halo ({halo})")
    if tile % max(1, spec.size_multiple):
        raise ConfigError(f"tile {tile} must be a multiple of the model's token stride {spec.size_multiple}")
    return tile, halo


def prepare(reader, config: PipelineConfig, out: Path, region, model) -> RunSetup:
    """Decide the run (see the module docstring); raises VimscopeError subclasses for unusable settings."""
    from vimscope.pipeline import finish
    from vimscope.tiling.plan import plan_tiles
    from vimscope.writers.atomic import partial_path

    t0 = time.perf_counter()
    meta = reader.meta
    stem = slide_stem(meta.path)
    paths = output_paths(out, stem)
    if "geotiff" in config.formats and not (meta.crs and meta.transform):
        raise ConfigError(f"{meta.path} is not georeferenced: --format geotiff needs a CRS (use ome-tiff)")
    lm = load_model(config, model)
    if not config.batch_size:  # auto: a GPU needs many tiles per forward to be busy; a CPU gains nothing from it
        config = dataclasses.replace(config, batch_size=GPU_BATCH if lm.device.type == "cuda" else CPU_BATCH)
    spec = lm.spec
    target_mpp = config.target_mpp or spec.mpp
    if target_mpp is not None and meta.mpp is None:
        raise MissingPixelSizeError(
            f"{meta.path} has no pixel size and the run needs one (target {target_mpp} µm/px); pass --mpp"
        )
    tile, halo = _tile_and_halo(config, lm)
    want = set(config.outputs)
    segmentation = bool(want & set(SEGMENTATION_OUTPUTS))
    features = "features" in want
    if not segmentation and not features:
        raise ConfigError("nothing to compute: outputs need classes, probabilities or features")
    found = probe(lm, tile, segmentation, features)
    if segmentation and "logits" not in found:
        raise ConfigError(f"model {spec.name} gives no class maps (only {', '.join(found)}); use vimscope features")
    stride = found.get("feature_stride", 1)
    if features and (halo % stride or tile % stride or config.chunk % stride):
        raise ConfigError(f"features need tile, halo and chunk to be multiples of the token stride {stride}")

    geometry = resolve_region(
        region, roi=config.roi, roi_class=config.roi_class, exclude=config.exclude, image_size=meta.dimensions
    )
    mask = None
    if config.tissue:
        from vimscope.tissue import mask as tissue_mask

        if meta.mpp is None and not meta.georeferenced:  # no physical size: a mask of at most 2048 px a side
            mask = tissue_mask(reader, downsample=max(1.0, max(meta.dimensions) / 2048))
        else:
            mask = tissue_mask(reader, mpp=config.tissue_mpp)
    core = tile - 2 * halo
    plan = plan_tiles(
        meta,
        target_mpp=target_mpp,
        tile=tile,
        halo=halo,
        mask=mask,
        region=geometry,
        stripe_width=aligned(core, config.chunk, config.stripe_width),
        band_height=config.band_height or aligned(core, config.chunk, BAND_HEIGHT),
    )
    n_classes = found.get("logits", 0)
    extra_maps = [k for k in found if k not in ("logits", "features", "feature_stride")] if segmentation else []
    classes = list(spec.classes) or [ClassSpec(f"class {i}") for i in range(n_classes)]
    if segmentation and len(classes) != n_classes:
        raise ConfigError(f"model {spec.name} gives {n_classes} classes but its spec names {len(classes)}")
    pad = config.pad or spec.pad_fill
    image_channels = 3 if "image" in want and spec.in_chans == 3 else None
    with_probs = "probabilities" in want or (spec.output == "nuclei" and segmentation)
    mpp_out = meta.mpp * plan.scale if meta.mpp else None

    key = run_key(
        plan=plan.to_json(),
        model=spec.name,
        weights=config.weights,
        stitch=config.stitch,
        outputs=sorted(want),
        chunk=config.chunk,
        batch=config.batch_size,
        pad=[pad, config.pad_value],
        precision=str(lm.dtype),
        device=lm.device.type,
        decode=config.decode,  # nvjpeg and libjpeg differ in the last bits: a resume keeps the decoder
    )
    record = ResumeRecord.load(partial_path(paths["zarr"]), key)
    layout = StoreLayout(
        out_shape=plan.out_shape,
        scale_um=mpp_out or 1.0,
        unit=finish.unit_of(meta),
        chunk=config.chunk,
        classes=classes,
        extra_maps=extra_maps,
        image_channels=image_channels,
        probabilities=with_probs,
        features=found.get("features") if features else None,
        feature_stride=stride if features else 16,
        instances=spec.output == "nuclei" and "logits" in found,
    )
    metadata = finish.store_metadata(spec, config, plan, lm, tile, halo)
    writer = _writer(paths["zarr"], layout, metadata=metadata, resume=record is not None)
    if record is None or not writer.resumed:
        record = ResumeRecord.fresh(writer.partial_path, key)
    done_tiles = {t for b in plan.bands if b.index in set(record.done_bands) for t in b.tiles}
    geom = TileGeometry.from_plan(plan, meta)
    stitcher = RunStitcher(
        plan,
        geom,
        mode=config.stitch,
        chunk=config.chunk,
        n_classes=n_classes,
        extra_maps=extra_maps,
        probabilities=with_probs,
        segmentation=segmentation,
        image_channels=image_channels,
        feature_dim=found.get("features") if features else None,
        feature_stride=stride,
        device=lm.device,
        skip_tiles=done_tiles,
    )
    notes = list(lm.notes)
    if record.done_bands:
        notes.append(f"resumed: {len(record.done_bands)} of {len(plan.bands)} bands were done before")
    if not plan.tiles:
        notes.append("no tile touches tissue or the region: the output stays empty (--no-tissue runs everything)")
    return RunSetup(
        reader=reader,
        config=config,
        lm=lm,
        plan=plan,
        geom=geom,
        writer=writer,
        record=record,
        stitcher=stitcher,
        paths=paths,
        stem=stem,
        classes=classes,
        extra_maps=extra_maps,
        tile=tile,
        halo=halo,
        pad=pad,
        segmentation=segmentation,
        features=features,
        mpp_out=mpp_out,
        geometry=geometry,
        roi=RegionMask(geometry, plan.scale) if geometry is not None else None,
        mask=mask,
        needed=stitcher.needed_tiles,
        t0=t0,
        notes=notes,
    )


def _writer(path: Path, layout: StoreLayout, *, metadata: dict, resume: bool):
    """The run's OME-Zarr writer (at its partial name until the run completes), resumed when asked and possible."""
    from vimscope.writers.omezarr import OmeZarrWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    probability_names = [c.name for c in layout.classes] + layout.extra_maps
    return OmeZarrWriter(
        path,
        out_shape=layout.out_shape,
        scale_um=layout.scale_um,
        classes=layout.classes,
        image=layout.image_channels is not None,
        image_channels=layout.image_channels or 3,
        probabilities=len(probability_names) if layout.probabilities else None,
        probability_names=probability_names if layout.probabilities else None,
        features=layout.features,
        feature_stride=layout.feature_stride,
        instances=layout.instances,
        chunk=layout.chunk,
        metadata=metadata,
        unit=layout.unit,
        pyramid="incremental",  # coarser levels follow each flushed band: only written areas are ever reduced
        resume=resume,
    )
