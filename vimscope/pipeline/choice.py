"""What a run picks from its input when the config leaves it open: the model, the formats a GIS user expects, and
whether class regions become map footprints.

A raster with a CRS is aerial or satellite imagery, not a slide: without ``model``/``weights`` it gets the
building-footprint model (``GEO_DEFAULT_MODEL``) instead of the nuclei default, and its ``geo_formats`` (a COG
class map, GeoPackage regions) join ``formats``. Slides, and images with no CRS, keep the configured defaults.
Every function here is pure, so the done-key, the plan and the batch runner's model cache all choose alike.
"""

from __future__ import annotations

from vimscope.errors import ConfigError
from vimscope.pipeline.config import DEFAULT_MODEL, PipelineConfig

GEO_DEFAULT_MODEL = "unet_buildings"  # shipped in vimscope/weights (building footprints at 0.15 m/px)
GEO_REASON = "chosen because the raster is georeferenced; --model to change"
GEO_MAX_MPP = 1.0  # metres per pixel: coarser rasters show no buildings the model could find
METRES = ("metre", "meter", "m", "metres", "meters")
NEEDS_CRS = ("geotiff", "gpkg")  # formats that place their content on the map


def has_crs(meta) -> bool:
    """A georeferenced raster with a named CRS (a transform alone does not say where, or in which unit)."""
    return bool(meta.crs) and meta.transform is not None


def default_model(meta) -> tuple[str, str | None]:
    """The model a run with neither ``model`` nor ``weights`` uses on ``meta``'s image, and why when that is not
    the slide default (None for slides)."""
    return (GEO_DEFAULT_MODEL, GEO_REASON) if has_crs(meta) else (DEFAULT_MODEL, None)


def choose_model(config: PipelineConfig, meta, module=None) -> tuple[PipelineConfig, str | None]:
    """``config`` with the model chosen for ``meta``'s image, and the reason (None when nothing was chosen).

    Only a config naming no model and no weights is changed, and only for a raster with a CRS; a ``module``
    given to the run wins unless it is the chosen model (the batch runner's cache builds that one). A raster the
    buildings model cannot sensibly run on (pixels in degrees or feet, or coarser than ``GEO_MAX_MPP``) is a
    ``ConfigError`` naming the way out, unless ``target_mpp`` says what resolution to run at.
    """
    if config.model is not None or config.weights is not None:
        return config, None
    name, why = default_model(meta)
    if why is None or (module is not None and getattr(getattr(module, "spec", None), "name", None) != name):
        return config, None
    if config.target_mpp is None:
        _check_ground_pixels(meta, name)
    return config.replace(model=name), why


def _check_ground_pixels(meta, name: str) -> None:
    units = (meta.crs_units or "").lower()
    where = f"{meta.path} ({meta.crs})"
    if units not in METRES:
        raise ConfigError(
            f"{where} has pixels in {units or 'unknown units'}; the default aerial model {name} runs at 0.15 m/px: "
            "reproject the raster to a projected CRS in metres, or pass --model and --target-mpp (in the CRS's units)"
        )
    if meta.mpp is not None and meta.mpp > GEO_MAX_MPP:
        raise ConfigError(
            f"{where} has {meta.mpp:.3g} m pixels, too coarse for building footprints (the default aerial model "
            f"{name} runs at 0.15 m/px, for sources of 0.075-0.3 m/px): pass --model and --target-mpp"
        )


def formats_for(config: PipelineConfig, meta) -> list[str]:
    """The formats a run writes: ``formats``, plus ``geo_formats`` for a raster with a CRS. Asking for a format
    that needs a CRS on an image without one is a ``ConfigError``."""
    if not has_crs(meta):
        missing = [f for f in config.formats if f in NEEDS_CRS]
        if missing:
            raise ConfigError(
                f"{meta.path} is not georeferenced: --format {missing[0]} needs a CRS "
                "(use ome-tiff for the class map; the GeoJSON holds the regions in pixels)"
            )
        return list(config.formats)
    return list(dict.fromkeys([*config.formats, *config.geo_formats]))


def wants_footprints(spec, meta, outputs, formats) -> bool:
    """Class regions as footprints (``pipeline.footprints``: map coordinates, ids, m², confidence): a class model on
    a raster with a CRS, its regions asked for as GeoJSON or GeoPackage. They carry the model's confidence, so the
    run keeps the probabilities for them (in the store only when asked)."""
    return spec.output == "classes" and has_crs(meta) and ("geojson" in outputs or "gpkg" in formats)
