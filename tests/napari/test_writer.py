"""Writers: labels -> OME-Zarr labels (round trip through the reader); labels and shapes -> GeoJSON in the
pipeline's conventions (level-0 pixel edges, or map coordinates for georeferenced rasters)."""

from __future__ import annotations

import json

import numpy as np
import shapely

from tests.conftest import shared_path


def _labels() -> np.ndarray:
    labels = np.zeros((300, 400), np.uint8)
    labels[20:120, 30:200] = 1
    labels[150:280, 100:390] = 2
    labels[200:220, 10:40] = 3
    return labels


def _features(path):
    return json.loads(path.read_text())["features"]


def test_labels_zarr_round_trip(make_napari_viewer, tmp_path):
    from napari.utils.colormaps import DirectLabelColormap

    viewer = make_napari_viewer()
    colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: (1, 0, 0, 1), 2: (0, 0, 1, 1), 3: (1, 1, 0, 1)}
    layer = viewer.add_labels(
        np.kron(_labels(), np.ones((2, 3), np.uint8)),
        name="my labels",
        scale=(0.5, 0.5),
        translate=(10.0, 20.0),
        units=("um", "um"),
        colormap=DirectLabelColormap(color_dict=colors),
    )
    (written,) = viewer.layers.save(str(tmp_path / "marks.ome.zarr"), selected=False, plugin="vimscope")
    assert written.endswith("marks.ome.zarr")
    assert (tmp_path / "marks.ome.zarr" / "labels" / ".zattrs").is_file()
    attrs = json.loads((tmp_path / "marks.ome.zarr" / "labels" / "my_labels" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["axes"][-1]["unit"] == "micrometer"
    assert [c["rgba"] for c in attrs["image-label"]["colors"]][1] == [255, 0, 0, 255]

    viewer.layers.clear()
    (back,) = viewer.open(written, plugin="vimscope")
    assert back._type_string == "labels" and back.multiscale
    assert [a.shape for a in back.data] == [(600, 1200), (300, 600), (150, 300)]
    np.testing.assert_array_equal(np.asarray(back.data[0]), layer.data)
    np.testing.assert_array_equal(np.asarray(back.data[1]), layer.data[::2, ::2])
    np.testing.assert_allclose(back.scale, layer.scale)
    np.testing.assert_allclose(back.translate, layer.translate)
    np.testing.assert_allclose(back.colormap.map(np.array([2]))[0], (0, 0, 1, 1), atol=1e-6)


def test_labels_geojson_on_level0_pixel_edges(make_napari_viewer, tmp_path):
    from vimscope.vector.polygons import rasterize

    labels = _labels()
    viewer = make_napari_viewer()
    # a class map at 2 level-0 px per pixel, placed as the pipeline places it (NGFF: centre at (s - 1) / 2)
    info = {
        "pixel_size": 0.5,
        "unit": "um",
        "classes": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 1, "name": "tumour", "color": [200, 0, 0]},
            {"value": 2, "name": "stroma", "color": [0, 160, 0]},
            {"value": 3, "name": "fat", "color": [250, 250, 0]},
        ],
    }
    viewer.add_labels(labels, name="classes", scale=(1.0, 1.0), translate=(0.25, 0.25), metadata={"vimscope": info})
    (written,) = viewer.layers.save(str(tmp_path / "classes.geojson"), plugin="vimscope")
    features = _features(tmp_path / "classes.geojson")
    assert {f["properties"]["classification"]["name"] for f in features} == {"tumour", "stroma", "fat"}
    assert all(f["properties"]["objectType"] == "annotation" for f in features)
    tumour = next(f for f in features if f["properties"]["classification"]["name"] == "tumour")
    assert tumour["properties"]["classification"]["color"] == [200, 0, 0]
    assert shapely.geometry.shape(tumour["geometry"]).bounds == (60.0, 40.0, 400.0, 240.0)
    np.testing.assert_allclose(tumour["properties"]["measurements"]["Area µm^2"], 100 * 170 * 1.0)
    # back to the class map's pixels: exactly the labels
    geoms = [shapely.affinity.scale(shapely.geometry.shape(f["geometry"]), 0.5, 0.5, origin=(0, 0)) for f in features]
    values = [{"tumour": 1, "stroma": 2, "fat": 3}[f["properties"]["classification"]["name"]] for f in features]
    np.testing.assert_array_equal(rasterize(geoms, values, labels.shape), labels)


def test_instance_labels_geojson_are_detections(make_napari_viewer, tmp_path):
    labels = np.zeros((50, 60), np.int32)
    labels[5:10, 5:12] = 7
    labels[30:40, 40:44] = 123456
    viewer = make_napari_viewer()
    viewer.add_labels(labels, name="cells")
    viewer.layers.save(str(tmp_path / "cells.geojson"), plugin="vimscope")
    features = _features(tmp_path / "cells.geojson")
    assert sorted(f["properties"]["measurements"]["Label"] for f in features) == [7, 123456]
    assert all(f["properties"]["objectType"] == "detection" for f in features)
    cell = next(f for f in features if f["properties"]["measurements"]["Label"] == 7)
    assert shapely.geometry.shape(cell["geometry"]).bounds == (5.0, 5.0, 12.0, 10.0)


def test_shapes_geojson_is_a_pipeline_region(make_napari_viewer, tmp_path, small_slide):
    from vimscope.vector.roi import read_geojson_region

    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(small_slide), plugin="vimscope")
    rect = np.array([[10, 20], [10, 60], [50, 60], [50, 20]], float)  # level-0 pixel centres (row, col)
    # drawn the way napari's "new shapes layer" button makes one: at the slide's scale (2 µm/px here)
    shapes = viewer.add_shapes([rect], shape_type="rectangle", scale=slide.scale, name="roi", edge_color="cyan")
    shapes.add_ellipses(np.array([[100, 100], [100, 140], [120, 140], [120, 100]], float))
    viewer.layers.selection = {shapes}
    viewer.layers.save(str(tmp_path / "roi.geojson"), selected=True, plugin="vimscope")
    features = _features(tmp_path / "roi.geojson")
    assert len(features) == 2
    box = shapely.geometry.shape(features[0]["geometry"])
    assert box.bounds == (20.5, 10.5, 60.5, 50.5)  # pixel (r, c) covers [c, c+1) x [r, r+1)
    assert features[0]["properties"]["classification"] == {"name": "roi", "color": [0, 255, 255]}
    ellipse = shapely.geometry.shape(features[1]["geometry"])
    np.testing.assert_allclose(ellipse.area, np.pi * 20 * 10, rtol=0.01)
    region = read_geojson_region(tmp_path / "roi.geojson")
    np.testing.assert_allclose(region.area, box.area + ellipse.area, rtol=1e-6)


def test_shapes_on_a_georeferenced_raster(make_napari_viewer, tmp_path):
    """Like the pipeline's GeoJSON: level-0 pixel coordinates (a valid --roi), areas in square metres."""
    from vimscope.io import open_slide

    path = shared_path("data/aerial/RGB.byte.tif")
    meta = open_slide(path).meta
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="vimscope")
    rect = np.array([[99.5, 199.5], [99.5, 299.5], [149.5, 299.5], [149.5, 199.5]]) * image.scale  # world, metres
    viewer.add_shapes([rect], shape_type="polygon", name="field")
    viewer.layers.save(str(tmp_path / "field.geojson"), selected=True, plugin="vimscope")
    (feature,) = _features(tmp_path / "field.geojson")
    geom = shapely.geometry.shape(feature["geometry"])
    np.testing.assert_allclose(geom.bounds, (200, 100, 300, 150), atol=1e-6)
    np.testing.assert_allclose(feature["properties"]["measurements"]["Area m^2"], 100 * 50 * meta.mpp**2, rtol=1e-6)
