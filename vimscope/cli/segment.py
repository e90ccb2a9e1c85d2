"""``vimscope segment`` and ``vimscope features``: the pipeline on one or more slides, with a progress bar.

Options left unset keep the values of ``--config`` (or the packaged ``default.yaml``), and those left null there
come from the model's IO contract (tile, halo, resolution). Each slide ends with a one-paragraph report.
"""

from __future__ import annotations

from pathlib import Path

import click

from vimscope.errors import ConfigError, VimscopeError

FORMAT_CHOICES = ("ome-zarr", "ome-tiff", "geotiff", "gpkg", "geojson")


def _split(values) -> list[str]:
    out = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def common_options(f):
    """The options ``segment``, ``features`` and ``batch`` share."""
    options = [
        click.option(
            "-o",
            "--out",
            type=click.Path(file_okay=False),
            default=None,
            help="Output folder (default: ./vimscope-output).",
        ),
        click.option(
            "--model",
            default=None,
            help="Registered model name or alias, e.g. buildings (default: unet_buildings for rasters with a CRS, "
            "else vim_tiny_nuclei).",
        ),
        click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Model weights file."),
        click.option("--mpp", type=float, default=None, help="Level-0 pixel size in µm/px, overriding the file's."),
        click.option("--target-mpp", type=float, default=None, help="Resolution to run at (default: the model's)."),
        click.option("--tile", type=int, default=None, help="Tile side in px, halo included (default: the model's)."),
        click.option(
            "--overlap",
            "halo",
            type=int,
            default=None,
            help="Context px on each tile side (the halo; tiles overlap by twice this).",
        ),
        click.option(
            "--stitch",
            type=click.Choice(["crop", "cosine", "gaussian"]),
            default=None,
            help="Combine overlapping tiles by cropping the halo (default) or window blending.",
        ),
        click.option("--batch-size", type=int, default=None, help="Tiles per forward pass (0: 32 on CUDA, 4 on CPU)."),
        click.option("--device", default=None, help="auto, cpu, cuda or cuda:N."),
        click.option("--workers", type=int, default=None, help="Reader threads (0: all cores but one)."),
        click.option(
            "--decode",
            type=click.Choice(["auto", "cpu", "gpu"]),
            default=None,
            help="JPEG tile decoding: gpu decodes a JPEG-tiled level's own tiles (nvjpeg, else CPU threads); "
            "cpu lets the slide reader decode; auto: gpu when the model runs on CUDA.",
        ),
        click.option(
            "--roi",
            type=click.Path(dir_okay=False),
            default=None,
            help="GeoJSON of regions to run on (QuPath export, level-0 pixels).",
        ),
        click.option("--roi-class", default=None, help="Use only --roi features of this classification."),
        click.option("--exclude", type=click.Path(dir_okay=False), default=None, help="GeoJSON of regions to skip."),
        click.option("--no-tissue", is_flag=True, default=False, help="Run on every tile, not only tissue."),
        click.option(
            "--tta",
            is_flag=True,
            default=False,
            help="Test-time augmentation: average the model over flips and 90° turns (8x the model's time).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="YAML file with pipeline settings.",
        ),
        click.option("--overwrite", is_flag=True, default=False, help="Run slides whose output exists again."),
        click.option(
            "--strict",
            is_flag=True,
            default=False,
            help="Fail a slide with a damaged tile (exit 11, no output) instead of filling the tile and listing it.",
        ),
        click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_config(*, outputs=None, formats=None, **opts):
    """A PipelineConfig from CLI options (unset ones keep the config file's / packaged values)."""
    from vimscope.pipeline import PipelineConfig

    config_file = opts.pop("config_file", None)
    no_tissue = opts.pop("no_tissue", False)
    overrides = {k: v for k, v in opts.items() if v is not None}
    if no_tissue:
        overrides["tissue"] = False
    for flag in ("overwrite", "strict", "tta"):  # a flag left out keeps the config file's value
        if not overrides.get(flag):
            overrides.pop(flag, None)
    if outputs is not None:
        overrides["outputs"] = outputs
    if formats is not None:
        overrides["formats"] = formats
    return PipelineConfig.load(config_file, **overrides)


def _check_slides(slides) -> list[str]:
    if not slides:
        raise click.UsageError("give at least one slide")
    return list(slides)


def run_slides(slides, config, out: Path, *, quiet: bool) -> int:
    """Run each slide; a slide's error is one line and the others still run. Returns the exit code."""
    from vimscope.cli.progress import RunProgress
    from vimscope.pipeline import iter_run, slide_stem

    codes = []
    many = len(slides) > 1
    for slide in slides:
        try:
            with RunProgress(slide_stem(slide), quiet=quiet) as bar:
                result = None
                for event in iter_run(slide, config, out=out):
                    bar.update(event)
                    if event.stage == "done":
                        result = event.outputs.get("result")
            if result is not None:
                click.echo(result.report)
        except VimscopeError as e:
            if not many:
                raise
            click.echo(f"vimscope: error: {slide}: {e}", err=True)
            codes.append(e.exit_code)
    return codes[0] if codes else 0


def _formats(values) -> tuple[list[str], bool]:
    """(extra raster formats, whether GeoJSON was asked for) from ``--format`` values."""
    formats, geojson = [], False
    for f in _split(values):
        if f not in FORMAT_CHOICES:
            raise ConfigError(f"unknown --format {f!r} (known: {', '.join(FORMAT_CHOICES)})")
        if f == "geojson":
            geojson = True
        elif f != "ome-zarr" and f not in formats:
            formats.append(f)
    return formats, geojson


def _finish(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


def segment_config(formats=(), probabilities=False, no_image_copy=False, **opts):
    """The PipelineConfig of a segmentation run from the CLI options (``vimscope batch`` reuses it per slide)."""
    from vimscope.pipeline import PipelineConfig

    base = PipelineConfig.load(opts.get("config_file"))
    outputs = [o for o in base.outputs if o != "features"]
    if probabilities and "probabilities" not in outputs:
        outputs.append("probabilities")
    if no_image_copy:
        outputs = [o for o in outputs if o != "image"]
    extra, geojson = _formats(formats)
    if geojson and "geojson" not in outputs:
        outputs.append("geojson")
    return build_config(outputs=outputs, formats=list(dict.fromkeys([*base.formats, *extra])), **opts)


@click.command()
@click.argument("slides", nargs=-1, type=click.Path())
@common_options
@click.option(
    "--format",
    "formats",
    multiple=True,
    help="Extra outputs: ome-tiff, geotiff, gpkg, geojson (repeat or comma-separate); OME-Zarr is always written. "
    "Rasters with a CRS get geotiff (a COG class map) and gpkg (GeoPackage footprints) without asking.",
)
@click.option("--probabilities", is_flag=True, default=False, help="Also store class probabilities (uint8).")
@click.option(
    "--no-image-copy",
    is_flag=True,
    default=False,
    help="Write label pyramids as standalone images (overlay them on the original slide).",
)
@click.option(
    "--image-codec",
    type=click.Choice(["blosc", "jpeg"]),
    default=None,
    help="Codec of the OME-Zarr image copy. blosc (default): lossless, every NGFF reader opens the store. "
    "jpeg: about 3x smaller, but only vimscope and its napari plugin read it; ome-zarr-py, napari-ome-zarr, "
    "QuPath, Fiji/Bio-Formats, vizarr, Neuroglancer and webKnossos fail on the whole store, labels included.",
)
def segment(slides, out, quiet, formats, probabilities, no_image_copy, **opts):
    """Segment SLIDE... and write <stem>.ome.zarr, a preview, a summary and GeoJSON into the output folder."""
    slides = _check_slides(slides)
    config = segment_config(formats, probabilities, no_image_copy, **opts)
    _finish(run_slides(slides, config, Path(out or "vimscope-output"), quiet=quiet))


@click.command()
@click.argument("slides", nargs=-1, type=click.Path())
@common_options
def features(slides, out, quiet, **opts):
    """Export the backbone's feature maps of SLIDE... (float16 token grid in <stem>.ome.zarr/features)."""
    slides = _check_slides(slides)
    config = build_config(outputs=["features", "summary"], **opts)
    _finish(run_slides(slides, config, Path(out or "vimscope-output"), quiet=quiet))
