"""QuPath features written column by column (``writers.featuretext``, ``GeoJSONWriter.add_texts``,
``ObjectTableWriter.add_columns``) against the per-object path (``qupath_feature``, ``add_many``, ``add``): the
same bytes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import shapely

from vimscope.writers.featuretext import PropertiesTemplate, uuid5_strings
from vimscope.writers.geojson import GeoJSONWriter, area_measurements, qupath_feature
from vimscope.writers.tables import BATCH_ROWS, ObjectTableWriter


def test_uuid5_strings_equal_uuid5():
    rng = np.random.default_rng(0)
    names = ["", "a", "slide/1", "µm/ü/€", *(f"stem-{i}/{int(v)}" for i, v in enumerate(rng.integers(0, 10**12, 500)))]
    for ns in (uuid.NAMESPACE_DNS, uuid.UUID("5b0c6f0e-9a51-4d8e-8a43-6f1e2f3d7c21"), uuid.uuid4()):
        assert uuid5_strings(ns, names) == [str(uuid.uuid5(ns, n)) for n in names]


def _values(rng, n):
    """Areas and probabilities as a run computes them, plus awkward floats (tiny, huge, integral, non-finite)."""
    area = rng.integers(1, 5000, n).astype(np.float64) * 0.25**2
    prob = rng.random(n)
    area[:8] = [0.0, 1e-7, 1e17, 123456789.0, 0.1 + 0.2, np.inf, -np.inf, np.nan][: min(8, n)]
    prob[:3] = [1.0, 5e-324, np.nan][: min(3, n)]
    return area, prob


@pytest.mark.parametrize("unit,name,color", [("µm", "Nucleus", (230, 25, 75)), ("m", 'Tumour "ü"', None)])
def test_templates_write_what_qupath_feature_writes(tmp_path, unit, name, color):
    rng = np.random.default_rng(1)
    n = 300
    area, prob = _values(rng, n)
    labels = rng.integers(1, 2**40, n)
    geoms = [shapely.box(*rng.integers(0, 100, 2), *rng.integers(100, 200, 2)) for _ in range(n)]
    geoms[5] = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)])
    ids = [str(uuid.uuid4()) for _ in range(n)]
    key = f"Area {unit}^2"

    one = GeoJSONWriter(tmp_path / "one.geojson")
    for i in range(n):
        m = {**area_measurements(float(area[i]) / 0.0625, 0.25, unit), "Class probability": float(prob[i])}
        m[key] = float(area[i])
        one.add_many(
            [
                qupath_feature(
                    geoms[i], id=ids[i], properties={"label": int(labels[i])}, name=name, color=color, measurements=m
                )
            ]
        )
    one.close()
    bulk = GeoJSONWriter(tmp_path / "bulk.geojson")
    template = PropertiesTemplate(
        object_type="detection", name=name, color=color, measurements=[key, "Class probability"], properties=["label"]
    )
    texts = template.texts([area, prob, labels])
    bulk.add_texts(geoms[:100], ids[:100], texts[:100])
    bulk.add_texts(geoms[100:], ids[100:], texts[100:])
    bulk.close()
    assert (tmp_path / "bulk.geojson").read_bytes() == (tmp_path / "one.geojson").read_bytes()


def test_gzip_switch_is_the_same(tmp_path):
    geoms = [shapely.box(i, 0, i + 1, 1) for i in range(30)]
    template = PropertiesTemplate(object_type="annotation", name="x", color=(1, 2, 3), measurements=["a"])
    texts = template.texts([np.arange(30) * 0.5])
    feats = [
        qupath_feature(g, id=str(i), object_type="annotation", name="x", color=(1, 2, 3), measurements={"a": i * 0.5})
        for i, g in enumerate(geoms)
    ]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()  # one name: gzip's header holds it
    one = GeoJSONWriter(tmp_path / "a" / "x.geojson", gzip_threshold=12)
    for f in feats:
        one.add(f)
    bulk = GeoJSONWriter(tmp_path / "b" / "x.geojson", gzip_threshold=12)
    for a in range(0, 30, 7):
        bulk.add_texts(geoms[a : a + 7], [str(i) for i in range(a, min(30, a + 7))], texts[a : a + 7])
    a, b = one.close(), bulk.close()
    assert a.suffix == b.suffix == ".gz"
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_columns_equal_rows(tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    rng = np.random.default_rng(2)
    n = 2 * BATCH_ROWS + 123
    cols = {
        "id": [str(i) for i in range(n)],
        "label": list(range(n)),
        "centroid_x": rng.random(n).tolist(),
        "class": ["Nucleus" if v else "Other" for v in rng.random(n) > 0.5],
        "probability": rng.random(n).tolist(),
    }
    rows = ObjectTableWriter(tmp_path / "rows", format=fmt)
    for i in range(n):
        rows.add({k: v[i] for k, v in cols.items()})
    columns = ObjectTableWriter(tmp_path / "columns", format=fmt)
    for a, b in ((0, 5), (5, 5), (5, BATCH_ROWS + 7), (BATCH_ROWS + 7, n)):
        columns.add_columns({k: v[a:b] for k, v in cols.items()})
    assert rows.close().read_bytes() == columns.close().read_bytes()


def _traced(labels):
    from vimscope.vector.polygons import group_parts, label_faces

    return np.asarray(group_parts(*label_faces(labels))[1], dtype=object)


def test_polygon_texts_equal_geos():
    """Pixel outlines (Polygons with holes, MultiPolygons, negative and large coordinates) as GEOS writes them;
    anything else is left to GEOS (None)."""
    from tests.vector.test_polygons import random_label_map
    from vimscope.writers.geojsontext import polygon_texts

    rng = np.random.default_rng(3)
    for seed in range(4):
        geoms = _traced((random_label_map(seed) * 1000).astype(np.uint32))  # touching, holes, corner contacts
        for shift in (0.0, -7.0, 123456789012.0, 999999999999000.0):  # all below 1e15
            moved = shapely.transform(geoms, lambda xy, s=shift: xy + s)
            assert polygon_texts(moved) == shapely.to_geojson(moved).tolist()
    boxes = np.array([shapely.box(*rng.integers(-50, 50, 2), *rng.integers(50, 99, 2)) for _ in range(50)], object)
    assert polygon_texts(boxes) == shapely.to_geojson(boxes).tolist()
    assert polygon_texts(np.array([], object)) == []
    for other in (
        shapely.box(0, 0, 1.5, 1),  # not whole numbers
        shapely.box(0, 0, 1e15, 1),  # GEOS writes 1e+15
        shapely.Polygon([(-0.0, 0), (1, 0), (1, 1)]),  # -0.0
        shapely.Polygon(),
        shapely.Point(1, 2),
        shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 1)]),
    ):
        assert polygon_texts(np.array([boxes[0], other], object)) is None


def test_polygon_texts_of_real_nuclei_outlines():
    from PIL import Image

    from tests.conftest import shared_path
    from vimscope.writers.geojsontext import polygon_texts

    labels = np.asarray(Image.open(shared_path("data/labelled/nuclei-gbm40/01_labels.png"))).astype(np.uint32)
    geoms = _traced(labels)
    assert len(geoms) > 20 and polygon_texts(geoms) == shapely.to_geojson(geoms).tolist()
