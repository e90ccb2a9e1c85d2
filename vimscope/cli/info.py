"""``vimscope info PATH...``: what an image is (levels, pixel size, vendor, CRS, bands) and, with
``--target-mpp``/``--tile``, how much of it a run would process. A readable table, or ``--json`` for machines.

It never fails for a missing pixel size: it prints ``mpp: unknown`` and leaves out what needs physical units
(``--require-mpp`` turns that into an error, for pre-flight checks of a batch). Imports stay light: no torch.
"""

from __future__ import annotations

import json
import sys

import click

from vimscope.errors import ConfigError, VimscopeError
from vimscope.pipeline import DEFAULT_TILE, describe_model, describe_slide


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _pixel_size(d: dict) -> str:
    """'0.499 µm/px', '300.04 metre/px' or 'unknown', from a ``SlideMeta.to_dict()``."""
    if d["mpp"] is None:
        return "unknown"
    if d["georeferenced"]:
        return f"{d['mpp']:.6g} {d['crs_units'] or 'CRS units'}/px"
    source = " (from --mpp)" if d["mpp_source"] == "override" else ""
    return f"{d['mpp']:.6g} µm/px{source}"


def _parse_box(text: str):
    from vimscope.types import Box

    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError as e:
        raise ConfigError(f"--region must be X,Y,W,H in level-0 pixels, got {text!r}") from e
    return Box(x, y, w, h)


def _render(console, d: dict) -> None:
    from rich.table import Table

    levels = f"{d['level_count'] - d['computed_levels']} in file"
    if d["computed_levels"]:
        levels += f" + {d['computed_levels']} computed"
    w, h = d["level_dimensions"][0]
    vendor = d["vendor"] or "?"
    meta_line = f"{vendor} ({d['backend']}), {w} x {h} px, mpp: {_pixel_size(d)}"
    console.print(f"[bold]{d['path']}[/bold]")
    console.print(f"  {meta_line}")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    bands = f"{d['bands']} x {d['dtype']}"
    if d["band_names"]:
        bands += " (" + ", ".join(d["band_names"]) + ")"
    rows = [("levels", levels), ("bands", bands)]
    if not d["georeferenced"]:
        rows.append(("objective", f"{d['objective_power']:g}x" if d["objective_power"] else "unknown"))
    rows.append(("tile size", "x".join(map(str, d["tile_size"])) if d["tile_size"] else "-"))
    rows.append(("file size", _fmt_size(d["file_size"])))
    if d["crs"] or d["transform"]:
        rows.append(("CRS", f"{d['crs'] or '?'}" + (f" ({d['crs_name']})" if d["crs_name"] else "")))
        if d["transform"]:
            x0, dx, rx, y0, ry, dy = d["transform"]
            text = f"origin ({x0:.10g}, {y0:.10g}), pixel ({dx:.6g}, {dy:.6g})"
            rows.append(("transform", text + (f", rotation ({rx:g}, {ry:g})" if rx or ry else "")))
    if d["nodata"] is not None:
        rows.append(("nodata", f"{d['nodata']:g}"))
    if d["has_alpha"]:
        rows.append(("alpha", f"band {d['alpha_band']}"))
    if d["associated"]:
        rows.append(("associated", ", ".join(d["associated"])))
    for key, value in rows:
        grid.add_row(key, value)
    console.print(grid)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("level", "width", "height", "downsample", "µm/px" if not d["georeferenced"] else "units/px", ""):
        table.add_column(col, justify="right" if col else "left")
    for lv in d["levels"]:
        table.add_row(
            str(lv["level"]),
            str(lv["width"]),
            str(lv["height"]),
            f"{lv['downsample']:.4g}",
            "-" if lv["mpp"] is None else f"{lv['mpp']:.4g}",
            "computed" if lv["computed"] else "",
        )
    console.print(table)
    p = d.get("processing")
    if p:
        tissue = "n/a" if p["tissue_fraction"] is None else f"{100 * p['tissue_fraction']:.1f}% ({p['mask_method']})"
        unit = (d["crs_units"] or "CRS units") if d["georeferenced"] else "µm"
        at = f"{p['target_mpp']:g} {unit}/px" if p["target_mpp"] is not None else "level 0"
        console.print(
            f"  processing at {at}: read level {p['read_level']} resampled {p['level_scale']:.4g}x, "
            f"tile {p['tile']} halo {p['halo']}: [bold]{p['tiles']}[/bold] of {p['grid_tiles']} tiles, tissue {tissue}"
        )
    for note in d.get("notes", []):
        console.print(f"  [yellow]note:[/yellow] {note}")
    console.print()


@click.command(name="info")
@click.argument("paths", nargs=-1, required=False)
@click.option("--model", "model_name", default=None, help="Also describe this model: IO contract and licence.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list, one object per path) instead of tables.")
@click.option(
    "--mpp",
    type=float,
    default=None,
    help="Level-0 pixel size to use instead of the file's (µm/px; CRS units/px for georeferenced rasters).",
)
@click.option("--target-mpp", type=float, default=None, help="Processing resolution (µm/px): report tiles and tissue.")
@click.option("--tile", type=int, default=None, help=f"Tile size in output pixels (default {DEFAULT_TILE}).")
@click.option("--halo", type=int, default=0, show_default=True, help="Overlap (pixels) on each side of a tile.")
@click.option("--region", default=None, metavar="X,Y,W,H", help="Count tiles only in this level-0 box.")
@click.option("--require-mpp", is_flag=True, help="Fail (exit 7) when an image has no pixel size.")
@click.pass_context
def info(ctx, paths, model_name, as_json, mpp, target_mpp, tile, halo, region, require_mpp):
    """Describe slides and rasters: levels, pixel size, vendor, CRS, bands; tiles and tissue with --target-mpp."""
    if not paths and model_name is None:
        raise click.UsageError("give a slide path, or --model NAME")
    if model_name is not None:
        m = describe_model(model_name)
        if as_json and not paths:
            click.echo(json.dumps(m, indent=2))
        elif not as_json:
            for key, value in m.items():
                click.echo(f"{key + ':':<13}{value}")
        if not paths:
            return
    boxes = None if region is None else [_parse_box(region)]
    results, errors = [], []
    for path in paths:
        try:
            results.append(
                describe_slide(
                    path,
                    mpp=mpp,
                    target_mpp=target_mpp,
                    tile=tile,
                    halo=halo,
                    require_mpp=require_mpp,
                    region=boxes,
                )
            )
        except VimscopeError as e:
            if len(paths) == 1:
                raise
            errors.append(e)
            click.echo(f"vimscope: error: {e}", err=True)
            results.append({"path": path, "error": str(e), "error_type": type(e).__name__, "exit_code": e.exit_code})
    if as_json:
        click.echo(json.dumps(results + ([describe_model(model_name)] if model_name else []), indent=2))
    else:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True, file=sys.stdout)
        for d in results:
            if "error" not in d:
                _render(console, d)
    if errors:
        ctx.exit(errors[0].exit_code)
