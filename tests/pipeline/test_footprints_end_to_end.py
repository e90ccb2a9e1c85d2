"""Building footprints end to end through ``vimscope segment`` on a real aerial GeoTIFF (Inria, Austin, EPSG:26914):
the GeoPackage a GIS opens (read back with GDAL through pyogrio), the GeoJSON beside it and the COG class map.

The input is a 384 px crop of ``aerial_sample.tif`` written as a GeoTIFF with the same georeferencing, so one
896 px tile of the buildings model covers it (a few seconds on two CPU cores).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import tifffile
from pyogrio import raw

from tests.conftest import shared_path
from vimscope.cli.main import main
from vimscope.vector.polygons import rasterize
from vimscope.writers.geotiff import read_georeference, scaled_transform, write_geotiff

INRIA = "data/labelled/buildings-inria/aerial_sample.tif"
LABELS = "data/labelled/buildings-inria/aerial_sample_labels.tif"
ROW, COL, SIDE = 0, 100, 384  # a crop with a dozen houses


def _crop(src, dst, row: int, col: int, side: int):
    """``src``'s pixels [row, row + side) x [col, col + side) as a GeoTIFF at ``dst``, on the same map grid."""
    geo = read_georeference(src)
    x0, dx, rx, y0, ry, dy = geo["transform"]
    pixels = np.ascontiguousarray(tifffile.imread(src)[row : row + side, col : col + side])
    transform = (x0 + col * dx + row * rx, dx, rx, y0 + col * ry + row * dy, ry, dy)
    write_geotiff(dst, [pixels], crs=geo["crs"], transform=transform)
    return transform


def _to_pixels(geoms, transform):
    x0, dx, _, y0, _, dy = transform
    return shapely.transform(geoms, lambda xy: (xy - np.array([x0, y0])) / np.array([dx, dy]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """One run of ``vimscope segment crop.tif --model buildings``: (output folder, crop transform, exit code)."""
    tmp = tmp_path_factory.mktemp("footprints")
    transform = _crop(shared_path(INRIA), tmp / "crop.tif", ROW, COL, SIDE)
    out = tmp / "out"
    rc = main(["segment", str(tmp / "crop.tif"), "--model", "buildings", "-o", str(out), "--device", "cpu", "-q"])
    return out, transform, rc


def test_the_geopackage_holds_footprints_on_the_map_with_their_attributes(segmented):
    out, transform, rc = segmented
    assert rc == 0
    meta, fids, wkb, fields = raw.read(out / "crop.gpkg")  # GDAL's own GeoPackage driver
    assert meta["crs"] == "EPSG:26914"
    assert meta["geometry_type"] == "MultiPolygon"
    columns = dict(zip(meta["fields"], fields))
    assert set(columns) == {"id", "class", "area_m2", "confidence"}
    geoms = shapely.from_wkb(wkb)
    assert len(geoms) >= 8 and shapely.is_valid(geoms).all()
    ids = columns["id"]
    assert all(isinstance(i, str) and len(i) == 36 for i in ids) and len(set(ids)) == len(ids)
    assert set(columns["class"]) == {"building"}
    np.testing.assert_allclose(columns["area_m2"], shapely.area(geoms), rtol=1e-9)  # UTM: metres on the plane
    # the mean building probability over pixels the model called building: at least one half (uint8 steps)
    confidence = columns["confidence"].astype(float)
    assert np.isfinite(confidence).all() and (confidence >= 127 / 255).all() and (confidence <= 1).all()
    assert confidence.std() > 0  # measured per footprint, not a constant
    x0, dx, _, y0, _, dy = transform
    bounds = shapely.box(x0, y0 + SIDE * dy, x0 + SIDE * dx, y0)
    assert shapely.within(geoms, bounds.buffer(1e-6)).all()
    # simplified: far fewer vertices than their pixel staircases (squaring: tests/vector/test_footprints.py)
    corners = np.array([len(shapely.get_coordinates(g)) for g in geoms])
    assert np.median(corners) < 40 and np.median(shapely.area(geoms)) > 9.0  # split pieces under 9 m² are dropped


def test_the_footprints_line_up_with_the_class_map_and_the_ground_truth(segmented):
    out, transform, _ = segmented
    _, _, wkb, _ = raw.read(out / "crop.gpkg")
    geoms = shapely.from_wkb(wkb)
    # the model's own building pixels (the COG class map, 0.15 m): footprints are their simplified outlines, and
    # shifting them by one output pixel in any direction lines them up worse
    classes = tifffile.imread(out / "crop.classes.tif") == 1
    fine = scaled_transform(transform, 0.5)
    painted = rasterize(_to_pixels(geoms, fine), [1] * len(geoms), classes.shape, dtype=bool)
    on_grid = _iou(painted, classes)
    assert on_grid > 0.9
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        assert _iou(np.roll(painted, (dy, dx), axis=(0, 1)), classes) < on_grid
    # Inria's labels (255 = building) on the source grid: the model reaches about 0.6 IoU on this crop
    labels = tifffile.imread(shared_path(LABELS))[ROW : ROW + SIDE, COL : COL + SIDE] == 255
    painted = rasterize(_to_pixels(geoms, transform), [1] * len(geoms), labels.shape, dtype=bool)
    assert _iou(painted, labels) > 0.4


def test_the_geojson_carries_the_same_footprints_and_the_cog_its_georeferencing(segmented):
    out, transform, _ = segmented
    _, _, wkb, fields = raw.read(out / "crop.gpkg", columns=["id", "area_m2"])
    collection = json.loads((out / "crop.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"
    features = collection["features"]
    assert [f["id"] for f in features] == [f["properties"]["id"] for f in features] == list(fields[0])
    for f, g, area in zip(features, shapely.from_wkb(wkb), fields[1]):
        assert shapely.geometry.shape(f["geometry"]).equals(shapely.get_parts(g)[0])
        assert f["properties"]["area_m2"] == pytest.approx(area)
        assert f["properties"]["classification"]["name"] == "building"
    geo = read_georeference(out / "crop.classes.tif")  # the COG a GIS opens beside them
    assert geo["crs"] == "EPSG:26914" and geo["tiled"]
    np.testing.assert_allclose(geo["transform"], scaled_transform(transform, 0.5), rtol=1e-12)
    with tifffile.TiffFile(out / "crop.classes.tif") as tf:
        assert tf.pages[0].geotiff_tags["ProjectedCSTypeGeoKey"] == 26914
    summary = json.loads((out / "crop.summary.json").read_text())
    assert summary["model"]["name"] == "unet_buildings" and "chosen" not in summary["model"]
    assert summary["outputs"]["gpkg"].endswith("crop.gpkg")
    assert not (out / "crop.ome.zarr" / "probabilities").exists()  # kept for the confidences, not published


def test_a_raster_with_a_crs_gets_the_buildings_model_and_says_why(tmp_path, capsys):
    src = tmp_path / "small.tif"
    _crop(shared_path(INRIA), src, 0, 100, 112)
    rc = main(["segment", str(src), "-o", str(tmp_path / "out"), "--device", "cpu", "-q"])
    assert rc == 0
    report = capsys.readouterr().out
    assert "with unet_buildings (chosen because the raster is georeferenced; --model to change)" in report
    summary = json.loads((tmp_path / "out" / "small.summary.json").read_text())
    assert summary["model"]["chosen"] == "chosen because the raster is georeferenced; --model to change"
    assert (tmp_path / "out" / "small.gpkg").is_file() and (tmp_path / "out" / "small.classes.tif").is_file()
    # the choice is part of the done-key: naming the chosen model is the same run, so it is skipped
    rc = main(["segment", str(src), "--model", "buildings", "-o", str(tmp_path / "out"), "--device", "cpu", "-q"])
    assert rc == 0 and "done before with the same settings" in capsys.readouterr().out
