"""A Cloud-Optimised GeoTIFF of a class map (or any raster): the source CRS, transform and nodata, overviews.

GeoTIFF keys are plain TIFF tags (ModelPixelScale 33550, ModelTiepoint 33922 or ModelTransformation 34264 when
the grid is rotated, GeoKeyDirectory 34735, GeoAsciiParams 34737) plus GDAL's nodata (42113) and metadata
(42112, the class names). The file is laid out as a COG by ``writers.cog`` (tifffile, which reads it back in
the tests, cannot write that layout); class maps carry a palette so GIS viewers show the class colours.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from vimscope.writers.atomic import commit_path, output_errors, partial_path, remove_tree
from vimscope.writers.cog import write_cog
from vimscope.writers.ometiff import palette

# GeoKey ids
GT_MODEL_TYPE, GT_RASTER_TYPE, GT_CITATION = 1024, 1025, 1026
GEOGRAPHIC_TYPE, PROJECTED_TYPE = 2048, 3072
USER_DEFINED = 32767


def scaled_transform(transform: Sequence[float], factor: float) -> tuple[float, ...]:
    """The GDAL affine of a grid ``factor`` times coarser than the one ``transform`` describes (same origin)."""
    x0, dx, rx, y0, ry, dy = transform
    return (x0, dx * factor, rx * factor, y0, ry * factor, dy * factor)


def geokeys(crs: str) -> tuple[list[int], str]:
    """GeoKeyDirectory values and GeoAsciiParams for a CRS (EPSG-coded when pyproj finds a code)."""
    from pyproj import CRS

    crs_obj = CRS.from_user_input(crs)
    epsg = crs_obj.to_epsg(min_confidence=90)
    geographic = crs_obj.is_geographic
    ascii_params = ""
    keys = [(GT_MODEL_TYPE, 0, 1, 2 if geographic else 1), (GT_RASTER_TYPE, 0, 1, 1)]  # PixelIsArea
    if epsg is None:
        ascii_params = crs_obj.to_wkt().replace("|", "/") + "|"
        keys.append((GT_CITATION, 34737, len(ascii_params), 0))
    keys.append((GEOGRAPHIC_TYPE if geographic else PROJECTED_TYPE, 0, 1, epsg if epsg is not None else USER_DEFINED))
    keys.sort()
    directory = [1, 1, 0, len(keys)]
    for k in keys:
        directory.extend(k)
    return directory, ascii_params


def geotiff_tags(
    crs: str, transform: Sequence[float], nodata: float | None = None, metadata: dict | None = None
) -> list[tuple]:
    """tifffile ``extratags`` that georeference the first page."""
    x0, dx, rx, y0, ry, dy = (float(v) for v in transform)
    tags: list[tuple] = []
    if rx == 0 and ry == 0:
        tags.append((33550, "d", 3, (dx, -dy, 0.0), True))
        tags.append((33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True))
    else:
        matrix = (dx, rx, 0.0, x0, ry, dy, 0.0, y0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        tags.append((34264, "d", 16, matrix, True))
    directory, ascii_params = geokeys(crs)
    tags.append((34735, "H", len(directory), tuple(directory), True))
    if ascii_params:
        tags.append((34737, "s", 0, ascii_params, True))
    if metadata:
        items = "".join(f'<Item name="{escape(str(k))}">{escape(str(v))}</Item>' for k, v in metadata.items())
        tags.append((42112, "s", 0, f"<GDALMetadata>{items}</GDALMetadata>", True))
    if nodata is not None:
        tags.append((42113, "s", 0, _nodata_text(nodata), True))
    return tags


def _nodata_text(value: float) -> str:
    """GDAL's spelling: integers without a decimal point."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def write_geotiff(
    path: str | os.PathLike,
    levels: Sequence,
    *,
    crs: str,
    transform: Sequence[float],
    nodata: float | None = None,
    classes: Sequence | None = None,
    tile: int = 512,
    overwrite: bool = False,
) -> Path:
    """Write ``levels`` ((h, w) or (h, w, c), level 0 first, each half the previous) as a COG.

    ``transform`` is the GDAL affine of level 0 of the written grid (``scaled_transform`` from the source's
    when the output is coarser than the source). uint8 class maps get a palette and class names.
    """
    final = Path(path)
    partial = partial_path(final)
    base = levels[0]
    dtype = np.dtype(base.dtype)
    meta, colormap = None, None
    if classes is not None and dtype == np.uint8 and base.ndim == 2:
        photometric, colormap = "palette", palette(classes)
        meta = {f"CLASS_{i}": (c["name"] if isinstance(c, dict) else c.name) for i, c in enumerate(classes)}
    else:
        photometric = "rgb" if base.ndim == 3 and base.shape[2] == 3 else "minisblack"
    main = geotiff_tags(crs, transform, None, meta)
    every = geotiff_tags(crs, transform, nodata)[-1:] if nodata is not None else []
    try:
        with output_errors(final, None):
            write_cog(
                partial, levels, tile=tile, photometric=photometric, colormap=colormap, main_tags=main, level_tags=every
            )
            commit_path(partial, final, overwrite=overwrite)
    except BaseException:
        remove_tree(partial)
        raise
    return final


def read_georeference(path: str | os.PathLike) -> dict:
    """CRS (as "EPSG:n" or WKT), GDAL affine transform and nodata of a GeoTIFF, read with tifffile."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        geo = page.geotiff_tags or {}
        tags = page.tags
        nodata = tags.get(42113)
        if 34264 in tags:
            m = tags[34264].value
            transform = (m[3], m[0], m[1], m[7], m[4], m[5])
        else:
            sx, sy, _ = tags[33550].value
            tp = tags[33922].value
            transform = (tp[3] - tp[0] * sx, sx, 0.0, tp[4] + tp[1] * sy, 0.0, -sy)
        code = geo.get("ProjectedCSTypeGeoKey", geo.get("GeographicTypeGeoKey"))
        code = int(code) if code is not None else None
        crs = f"EPSG:{code}" if code not in (None, USER_DEFINED) else geo.get("GTCitationGeoKey")
        return {
            "crs": crs,
            "transform": tuple(float(v) for v in transform),
            "nodata": float(nodata.value) if nodata is not None else None,
            "levels": [p.shape for p in tf.pages],
            "tiled": page.is_tiled,
        }
