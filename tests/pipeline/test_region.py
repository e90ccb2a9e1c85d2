"""Regions: boxes and polygons (code or QuPath GeoJSON) restrict the tiles and the written pixels; damaged tiles."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import shapely

from tests.pipeline.helpers import read_store
from vimscope.errors import DamagedTileError
from vimscope.pipeline import PipelineConfig, run
from vimscope.types import Box
from vimscope.vector.roi import RegionMask

SETTINGS = dict(
    model="vim_test_pointwise",
    device="cpu",
    tile=128,
    halo=16,
    chunk=128,
    tissue=False,
    outputs=["classes", "probabilities"],
    workers=2,
)


@pytest.fixture(scope="module")
def full(small_slide, tmp_path_factory):
    result = run(small_slide, PipelineConfig.load(**SETTINGS), out=tmp_path_factory.mktemp("full"))
    return result, read_store(result.paths["zarr"])


def qupath_collection(*features) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(g),
                "properties": {"objectType": "annotation", "classification": {"name": name, "color": [255, 0, 0]}},
            }
            for name, g in features
        ],
    }


def test_polygon_region_from_qupath_geojson(small_slide, tmp_path, full):
    tumour = shapely.Polygon([(100, 80), (620, 150), (300, 560)])
    other = shapely.box(700, 500, 880, 690)
    hole = shapely.box(250, 200, 330, 260)
    roi, exclude = tmp_path / "roi.geojson", tmp_path / "exclude.geojson"
    roi.write_text(json.dumps(qupath_collection(("Tumor", tumour), ("Stroma", other))))
    exclude.write_text(json.dumps(qupath_collection(("Ignore", hole))))
    cfg = PipelineConfig.load(**SETTINGS, roi=str(roi), roi_class="Tumor", exclude=str(exclude))
    result = run(small_slide, cfg, out=tmp_path / "out")
    got = read_store(result.paths["zarr"])
    assert result.summary["tiles"]["planned"] < full[0].summary["tiles"]["planned"]
    inside = RegionMask(tumour.difference(hole), 1.0).mask(Box(0, 0, 900, 700))
    assert 20_000 < inside.sum() < 200_000
    assert np.array_equal(got["classes"][inside], full[1]["classes"][inside])
    assert np.array_equal(got["probabilities"][:, inside], full[1]["probabilities"][:, inside])
    assert (got["classes"][~inside] == 0).all() and (got["probabilities"][:, ~inside] == 0).all()


def test_box_region_from_code(small_slide, tmp_path, full):
    box = Box(200, 100, 300, 250)
    result = run(small_slide, PipelineConfig.load(**SETTINGS), out=tmp_path, region=[box])
    got = read_store(result.paths["zarr"])
    sl = (slice(box.y, box.y1), slice(box.x, box.x1))
    assert np.array_equal(got["classes"][sl], full[1]["classes"][sl])
    mask = np.ones(got["classes"].shape, bool)
    mask[sl] = False
    assert (got["classes"][mask] == 0).all()
    assert result.summary["tiles"]["planned"] == 4 * 3  # cores (96 px) touching x 200-500, y 100-350


class DamagingReader:
    """A real reader that reports a damaged tile for reads touching ``bad`` (as OpenSlide does for corrupt JPEG)."""

    def __init__(self, path, bad: Box):
        from vimscope.io import open_slide

        self.path, self.bad = str(path), bad
        self.inner = open_slide(self.path)
        self.meta = self.inner.meta

    def __reduce__(self):
        return (DamagingReader, (self.path, self.bad))

    def read_rgb(self, box, level=0):
        if box.intersect(self.bad):
            raise DamagedTileError("corrupt JPEG data in tile", box=box, level=level)
        return self.inner.read_rgb(box, level)

    def thumbnail(self, max_size=1024):
        return self.inner.thumbnail(max_size)

    def close(self):
        self.inner.close()


def test_damaged_tiles_are_recorded_filled_and_the_run_goes_on(small_slide, tmp_path, full):
    bad = Box(400, 300, 4, 4)
    reader = DamagingReader(small_slide, bad)
    assert pickle.loads(pickle.dumps(reader)).bad == bad
    result = run(reader, PipelineConfig.load(**SETTINGS), out=tmp_path)
    damaged = result.summary["damaged_tiles"]
    assert damaged["count"] >= 1 and "damaged" in result.report
    got = read_store(result.paths["zarr"])
    hit = np.zeros(got["classes"].shape, bool)
    for x, y, w, h in damaged["boxes"]:
        hit[y : y + h, x : x + w] = True
    assert hit[bad.y, bad.x]
    assert (got["probabilities"][:, hit] == 0).all() and (got["classes"][hit] == 0).all()
    assert np.array_equal(got["classes"][~hit], full[1]["classes"][~hit])


def test_hostile_roi_files_are_one_line_and_the_bad_input_code(small_slide, tmp_path, capsys):
    """A GeoJSON ROI nested 5,000 levels deep was a RecursionError (exit 70); a bow-tie ROI runs, repaired."""
    from vimscope.cli.main import main

    deep = tmp_path / "deep.geojson"
    deep.write_text('{"type": "Polygon", "coordinates": ' + "[" * 5000 + "]" * 5000 + "}")
    args = ["segment", str(small_slide), "-o", str(tmp_path / "out"), "--device", "cpu", "-q", "--model", "vim_test"]
    rc = main([*args, "--roi", str(deep)])
    err = capsys.readouterr().err.strip()
    assert rc == 8, err
    assert err.startswith("vimscope: error:") and "deep.geojson" in err and "\n" not in err


def test_a_bowtie_roi_runs_both_lobes(small_slide, tmp_path, full):
    bowtie = shapely.Polygon([(100, 100), (500, 500), (500, 100), (100, 500), (100, 100)])
    roi = tmp_path / "bowtie.geojson"
    roi.write_text(json.dumps(shapely.geometry.mapping(bowtie)))
    result = run(small_slide, PipelineConfig.load(**SETTINGS, roi=str(roi)), out=tmp_path / "out")
    got = read_store(result.paths["zarr"])
    for x in (150, 450):  # the left and the right lobe
        assert np.array_equal(got["probabilities"][:, 300, x], full[1]["probabilities"][:, 300, x])
        assert got["probabilities"][:, 300, x].any()
    assert not got["probabilities"][:, 150, 300].any()  # above the crossing: outside
