"""GeoJSON for QuPath (valid, streamed, gzipped past a threshold), RFC 7946 GeoJSON, the objects table and
GeoPackage, checked offline with the ``geojson`` package, pyarrow, sqlite3 and GDAL (pyogrio)."""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
import uuid

import geojson
import numpy as np
import pytest
import shapely

from vimscope.vector.polygons import instance_polygons, label_polygons
from vimscope.writers.geojson import GeoJSONWriter, area_measurements, qupath_feature
from vimscope.writers.gpkg import APPLICATION_ID, GeoPackageWriter, read_gpkg_geometry
from vimscope.writers.tables import ObjectTableWriter


def _instances(n_side=6, size=8):
    labels = np.zeros((n_side * size * 2, n_side * size * 2), np.uint32)
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            k += 1
            labels[i * 2 * size : i * 2 * size + size, j * 2 * size : j * 2 * size + size - (k % 3)] = k
    return labels


def _load(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return geojson.load(f)


def test_qupath_geojson_is_valid_and_carries_qupath_properties(tmp_path):
    labels = _instances()
    path = tmp_path / "slide.geojson"
    with GeoJSONWriter(path) as w:
        for value, geom in instance_polygons(labels, offset=(1000, 2000), scale=2.0):
            area = area_measurements(geom.area, 0.25)
            w.add(
                qupath_feature(
                    geom,
                    object_type="detection",
                    name="Tumor",
                    color=(200, 0, 0),
                    measurements={**area, "Mean intensity": np.float32(0.5), "Tumor probability": 0.9},
                    properties={"label": value},
                )
            )
        for _value, geom in label_polygons((labels > 0).astype(np.uint8), simplify=0.5):
            w.add(qupath_feature(geom, object_type="annotation", name="Nuclei region", color=(0, 0, 255)))
    assert w.final_path == path and not (tmp_path / "slide.geojson.partial").exists()
    collection = _load(path)
    assert collection.is_valid, collection.errors()
    features = collection["features"]
    assert len(features) == 2 * labels.max()  # one detection and one (separate) region outline per object
    ids = [f["id"] for f in features]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i) for i in ids)
    det = features[0]["properties"]
    assert det["objectType"] == "detection"
    assert det["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    # area in µm²: pixels x scale² x (0.25 µm)²
    assert det["measurements"]["Area µm^2"] == pytest.approx(
        shapely.geometry.shape(features[0]["geometry"]).area * 0.0625
    )
    assert det["measurements"]["Mean intensity"] == 0.5 and det["label"] == 1
    assert features[-1]["properties"]["objectType"] == "annotation"
    xs = [c[0] for c in shapely.get_coordinates(shapely.geometry.shape(features[0]["geometry"]))]
    assert min(xs) == 1000.0  # level-0 pixel coordinates, pixel edges


def test_gzip_switches_on_past_the_threshold_while_streaming(tmp_path):
    path = tmp_path / "many.geojson"
    w = GeoJSONWriter(path, gzip_threshold=50)
    sizes = []
    for i in range(120):
        w.add(qupath_feature(shapely.box(i, 0, i + 1, 1), name="x", color=(1, 2, 3)))
        if i in (10, 40):
            w._file.flush()
            sizes.append(w._partial.stat().st_size)
    assert sizes[1] > sizes[0] > 0, "features reach the disk as they are added"
    final = w.close()
    assert final.name == "many.geojson.gz" and not path.exists()
    assert not list(tmp_path.glob("*.partial"))
    collection = _load(final)
    assert collection.is_valid and len(collection["features"]) == 120
    assert collection["features"][119]["geometry"]["coordinates"][0][0][0] in (119.0, 120.0)


@pytest.mark.parametrize("forced", [True, False])
def test_gzip_can_be_forced(tmp_path, forced):
    w = GeoJSONWriter(tmp_path / "a.geojson", gzip=forced, gzip_threshold=1)
    for i in range(3):
        w.add(qupath_feature(shapely.box(i, 0, i + 1, 1)))
    final = w.close()
    assert final.suffix == (".gz" if forced else ".geojson")
    assert len(_load(final)["features"]) == 3


def test_rfc7946_output_is_lonlat_counterclockwise(tmp_path):
    # a 10 m square in UTM zone 18N near New York, written clockwise
    square = shapely.Polygon([(583000, 4507000), (583000, 4507010), (583010, 4507010), (583010, 4507000)])
    assert not square.exterior.is_ccw
    path = tmp_path / "map.geojson"
    with GeoJSONWriter(path, rfc7946=True, src_crs="EPSG:32618") as w:
        w.add(qupath_feature(square, object_type="annotation", name="building", color=(255, 0, 0)))
    text = path.read_text()
    collection = geojson.loads(text)
    assert collection.is_valid and "crs" not in json.loads(text)
    ring = shapely.geometry.shape(collection["features"][0]["geometry"])
    assert ring.exterior.is_ccw
    lon, lat = ring.centroid.x, ring.centroid.y
    assert -74.1 < lon < -73.9 and 40.6 < lat < 40.8


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_objects_table_reads_back(tmp_path, fmt):
    rows = [
        {"id": str(uuid.uuid4()), "centroid_x": i + 0.5, "centroid_y": 2 * i + 0.5, "area": 1.5 * i, "class": "Tumor"}
        for i in range(20_000)  # more than one batch
    ]
    w = ObjectTableWriter(tmp_path / "slide", format=fmt)
    for r in rows:
        w.add(r)
    path = w.close()
    assert path.name == f"slide.objects.{fmt}"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        assert table.num_rows == 20_000 and table.column_names == list(rows[0])
        assert table.column("area")[123].as_py() == rows[123]["area"]
    else:
        with open(path, newline="") as f:
            back = list(csv.DictReader(f))
        assert len(back) == 20_000 and back[123]["id"] == rows[123]["id"]
        assert float(back[123]["centroid_y"]) == rows[123]["centroid_y"]
    with pytest.raises(ValueError, match="unexpected column"):
        t = ObjectTableWriter(tmp_path / "other", format=fmt)
        t.add({"id": "a"})
        t.add({"id": "b", "extra": 1})


def test_geopackage_in_source_crs(tmp_path):
    geoms = [shapely.box(583000 + 20 * i, 4507000, 583010 + 20 * i, 4507010) for i in range(5)]
    geoms.append(shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)]))
    w = GeoPackageWriter(tmp_path / "map.gpkg", crs="EPSG:32618", layer="buildings")
    for i, g in enumerate(geoms):
        w.add(g, {"class": "building", "area_m2": g.area, "index": i})
    path = w.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    contents = db.execute("SELECT table_name, data_type, srs_id, min_x, max_x FROM gpkg_contents").fetchall()
    assert contents == [("buildings", "features", 32618, 0.0, 583090.0)]
    (definition,) = db.execute("SELECT definition FROM gpkg_spatial_ref_sys WHERE srs_id = 32618").fetchone()
    assert "UTM zone 18N" in definition
    assert db.execute("SELECT geometry_type_name, srs_id FROM gpkg_geometry_columns").fetchone() == ("GEOMETRY", 32618)
    rows = db.execute('SELECT geom, "class", area_m2, "index" FROM buildings ORDER BY fid').fetchall()
    assert [read_gpkg_geometry(r[0]).equals(g) for r, g in zip(rows, geoms)] == [True] * len(geoms)
    assert rows[0][1:] == ("building", 100.0, 0)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_geopackage_layer_with_a_declared_type_and_schema_reads_back_through_gdal(tmp_path):
    from pyogrio import raw

    w = GeoPackageWriter(tmp_path / "empty.gpkg", crs="EPSG:26914", layer="regions", geometry_type="MULTIPOLYGON")
    w.define({"id": "", "area_m2": 0.0, "count": 0})
    meta, _, geoms, fields = raw.read(w.close())  # no feature: the columns are still there
    assert meta["geometry_type"] == "MultiPolygon" and list(meta["fields"]) == ["id", "area_m2", "count"]
    assert meta["crs"] == "EPSG:26914" and len(geoms) == 0
    with pytest.raises(ValueError, match="define"):
        w = GeoPackageWriter(tmp_path / "late.gpkg", crs="EPSG:26914")
        w.add(shapely.box(0, 0, 1, 1), {"id": "a"})
        w.define({"id": ""})
    w.abort()
    assert list(tmp_path.iterdir()) == [tmp_path / "empty.gpkg"]  # the aborted one left nothing


def test_parquet_column_empty_in_the_first_batch_takes_later_numbers(tmp_path):
    import pyarrow.parquet as pq

    from vimscope.writers import tables

    w = ObjectTableWriter(tmp_path / "s", format="parquet")
    for i in range(tables.BATCH_ROWS + 5):
        w.add({"id": str(i), "mean": None if i < tables.BATCH_ROWS else float(i)})
    table = pq.read_table(w.close())
    assert table.column("mean")[tables.BATCH_ROWS].as_py() == float(tables.BATCH_ROWS)


def test_source_crs_geojson_names_its_crs(tmp_path):
    path = tmp_path / "utm.geojson"
    with GeoJSONWriter(path, crs="EPSG:32618") as w:
        w.add(qupath_feature(shapely.box(583000, 4507000, 583010, 4507010), object_type="annotation", name="b"))
    data = json.loads(path.read_text())
    assert data["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32618"
    assert geojson.loads(path.read_text()).is_valid
    assert data["features"][0]["geometry"]["coordinates"][0][0] == [583010.0, 4507000.0]
