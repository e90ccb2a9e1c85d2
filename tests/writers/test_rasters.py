"""Rasters for other viewers: a pyramidal OME-TIFF of the class map and a COG with the source's CRS,
transform and nodata, both opened with tifffile."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_path
from vimscope.config import ClassSpec
from vimscope.types import Box
from vimscope.writers.cog import cog_layout_problems
from vimscope.writers.geotiff import read_georeference, scaled_transform, write_geotiff
from vimscope.writers.ometiff import write_ome_tiff
from vimscope.writers.omezarr import OmeZarrWriter
from vimscope.writers.pyramid import downsample_mode

CLASSES = [ClassSpec("background", [0, 0, 0]), ClassSpec("building", [230, 30, 30]), ClassSpec("road", [90, 90, 90])]


def _pyramid(a, levels):
    out = [a]
    for _ in range(levels - 1):
        out.append(downsample_mode(out[-1]))
    return out


def test_ome_tiff_from_the_zarr_class_pyramid(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    classes = np.kron(rng.integers(0, 3, (40, 50)), np.ones((16, 16), np.uint8)).astype(np.uint8)[:620, :777]
    w = OmeZarrWriter(
        tmp_path / "s.ome.zarr", out_shape=classes.shape, scale_um=0.5, classes=CLASSES, chunk=128, image=False
    )
    w.write_block("classes", Box(0, 0, 777, 620), classes)
    w.finalize()
    levels = [w.array("classes", i) for i in range(w.level_count("classes"))]
    path = write_ome_tiff(tmp_path / "s.classes.ome.tif", levels, pixel_size_um=0.5, classes=CLASSES, tile=256)
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        series = tf.series[0]
        assert len(series.levels) == len(levels) >= 3
        for lvl, ref in zip(series.levels, levels):
            np.testing.assert_array_equal(lvl.asarray(), np.asarray(ref))
        page = tf.pages[0]
        assert page.is_tiled and page.tilewidth == 256 and page.photometric == 3  # palette
        assert tuple(page.colormap[:, 1] // 257) == (230, 30, 30)
        assert 'PhysicalSizeX="0.5"' in tf.ome_metadata
    assert not (tmp_path / "s.classes.ome.tif.partial").exists()


def test_cog_from_a_real_georeferenced_raster(tmp_path):
    import tifffile

    source = shared_path("data/aerial/cogeo.tif")
    src = read_georeference(source)
    assert src["crs"] == "EPSG:3857"
    with tifffile.TiffFile(source) as tf:
        rgb = tf.pages[0].asarray()
    classes = (rgb[..., 0] > 100).astype(np.uint8) + (rgb[..., 2] > 120).astype(np.uint8)
    levels = _pyramid(classes, 3)
    # the class map at half the source resolution: transform scaled by 2
    out = write_geotiff(
        tmp_path / "cogeo.classes.tif",
        levels[1:],
        crs=src["crs"],
        transform=scaled_transform(src["transform"], 2),
        nodata=0,
        classes=CLASSES,
        tile=256,
    )
    back = read_georeference(out)
    assert back["crs"] == "EPSG:3857"
    assert back["transform"] == pytest.approx(scaled_transform(src["transform"], 2))
    assert back["nodata"] == 0.0 and back["tiled"]
    assert back["levels"] == [lv.shape for lv in levels[1:]]
    assert cog_layout_problems(out) == []
    with tifffile.TiffFile(out) as tf:
        np.testing.assert_array_equal(tf.pages[0].asarray(), levels[1])
        np.testing.assert_array_equal(tf.pages[1].asarray(), levels[2])
        assert tf.pages[0].geotiff_tags["ProjectedCSTypeGeoKey"] == 3857
        assert "building" in tf.pages[0].tags[42112].value
        # same ground corner as the source
        x0, dx, _, y0, _, dy = back["transform"]
        assert (x0, y0) == pytest.approx(src["transform"][0:1] + src["transform"][3:4])
        assert x0 + dx * tf.pages[0].imagewidth == pytest.approx(src["transform"][0] + src["transform"][1] * 1024)


def test_tifffile_layout_is_not_cog_but_ours_is(tmp_path):
    """The check can fail: tifffile writes each IFD before its tiles."""
    import tifffile

    a = np.zeros((600, 600), np.uint8)
    with tifffile.TiffWriter(tmp_path / "plain.tif") as tw:
        tw.write(a, tile=(256, 256))
        tw.write(a[::2, ::2], tile=(256, 256), subfiletype=1)
    assert cog_layout_problems(tmp_path / "plain.tif")


@pytest.mark.parametrize(
    "crs,transform,expect",
    [
        ("EPSG:4326", (10.0, 1e-5, 0.0, 50.0, 0.0, -1e-5), "EPSG:4326"),
        ("EPSG:32618", (5e5, 0.3, 0.05, 4.5e6, 0.05, -0.3), "EPSG:32618"),  # rotated: ModelTransformation
        (
            "+proj=tmerc +lat_0=0 +lon_0=9.123 +k=0.9991 +x_0=321000 +ellps=GRS80 +units=m",
            (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
            "9.123",
        ),
    ],
    ids=["geographic", "rotated", "no-epsg"],
)
def test_georeference_round_trip(tmp_path, crs, transform, expect):
    rgb = np.random.default_rng(1).integers(0, 255, (300, 400, 3)).astype(np.uint8)
    out = write_geotiff(tmp_path / "x.tif", [rgb, rgb[::2, ::2]], crs=crs, transform=transform, tile=128)
    back = read_georeference(out)
    assert back["transform"] == pytest.approx(transform)
    assert expect.lower() in back["crs"].lower() or back["crs"] == expect
    assert back["nodata"] is None
    import tifffile

    with tifffile.TiffFile(out) as tf:
        np.testing.assert_array_equal(tf.pages[0].asarray(), rgb)
        assert tf.pages[0].photometric == 2
