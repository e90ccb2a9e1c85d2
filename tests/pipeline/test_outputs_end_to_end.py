"""Issue 7's done-when, end to end through `vimscope segment`: the outputs users open elsewhere are valid.

A georeferenced COG gets a GeoTIFF with its CRS and a pyramidal OME-TIFF; the demo slide, run with a per-pixel
"dark means nucleus" oracle (so there are real objects to find), gets QuPath detections and an object table
whose rows match them one to one.
"""

from __future__ import annotations

import json

import geojson
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from tests.conftest import shared_path
from vimscope.cli.main import main
from vimscope.demo import demo_slide_path


def _valid_geojson(path):
    data = geojson.loads(path.read_text())
    assert data.is_valid, data.errors()
    return data


def test_cogeo_outputs_geotiff_ome_tiff_geojson_preview_summary(tmp_path):
    src = shared_path("data/aerial/cogeo.tif")
    args = [
        "segment",
        str(src),
        "-o",
        str(tmp_path),
        "--model",
        "vim_test",
        "--format",
        "geotiff",
        "--format",
        "ome-tiff",
    ]
    rc = main([*args, "-q"])
    assert rc == 0

    from vimscope.writers.geotiff import read_georeference

    geo = read_georeference(tmp_path / "cogeo.classes.tif")
    assert geo["crs"] == "EPSG:3857"
    source = read_georeference(src)
    np.testing.assert_allclose(geo["transform"], source["transform"], rtol=1e-9)  # output at the source resolution
    with tifffile.TiffFile(tmp_path / "cogeo.classes.tif") as tf:
        assert tf.pages[0].is_tiled and len(tf.pages) > 1  # tiles plus overviews
        assert tf.pages[0].shape[:2] == (1024, 1024)
    with tifffile.TiffFile(tmp_path / "cogeo.classes.ome.tif") as tf:
        assert tf.is_ome and len(tf.series[0].levels) > 1

    _valid_geojson(tmp_path / "cogeo.geojson")
    summary = json.loads((tmp_path / "cogeo.summary.json").read_text())
    assert summary["unit"] == "m"
    assert all("area_m2" in a for a in summary["class_areas"].values())
    preview = np.asarray(Image.open(tmp_path / "cogeo.preview.png"))
    assert preview.std() > 5  # a picture, not a blank


class DarkIsNucleus(torch.nn.Module):
    """A per-pixel oracle on normalised RGB: dark pixels are nucleus, no boundaries, distance from darkness."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def forward(self, x):
        mean = torch.tensor(self.spec.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.spec.std, device=x.device).view(1, -1, 1, 1)
        grey = (x * std + mean).mean(1, keepdim=True)  # 0-1
        nucleus = (0.55 - grey) * 40  # logit: dark purple nuclei of H&E
        return {
            "logits": torch.cat([-nucleus, nucleus], 1),
            "boundary": torch.full_like(grey, -10.0),
            "distance": (0.6 - grey).clamp(0, 1) * 3,
        }


def test_demo_slide_detections_and_object_table_agree(tmp_path):
    slide = demo_slide_path()
    if slide is None:
        pytest.fail("the demo slide is missing: run `bash .ci/setup`")
    from vimscope.models import load_spec
    from vimscope.pipeline import PipelineConfig, run

    model = DarkIsNucleus(load_spec("vim_test_nuclei"))
    config = PipelineConfig.load(model="vim_test_nuclei", target_mpp=1.0, device="cpu")
    result = run(slide, config, out=tmp_path, model=model)

    detections = _valid_geojson(tmp_path / "CMU-1-Small-Region.nuclei.geojson")["features"]
    assert len(detections) > 50, "dark nuclei of the demo slide should be found"
    assert {f["properties"]["objectType"] for f in detections} == {"detection"}
    assert all(f["properties"]["classification"]["name"] == "Nucleus" for f in detections)

    table_path = next(tmp_path.glob("CMU-1-Small-Region.objects.*"))
    if table_path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(table_path).to_pylist()
    else:
        import csv

        rows = list(csv.DictReader(table_path.open()))
    assert len(rows) == len(detections)
    assert {str(r["id"]) for r in rows} == {f["id"] for f in detections}  # one join key
    labels = {int(r["label"]) for r in rows}
    assert labels == {f["properties"]["label"] for f in detections} and len(labels) == len(rows)
    assert sum(result.summary["objects"].values()) == len(detections)

    # the instance step read the probabilities, but they were not asked for: not in the finished store
    import zarr

    store = zarr.open_group(str(result.paths["zarr"]), mode="r")
    assert "probabilities" not in store and "nuclei" in store["labels"]
    assert "probabilities" not in json.dumps(store.attrs.asdict()["vimscope"]["layout"])
    # nothing staged is left behind: every output stands beside the store under its final name
    assert not (result.paths["zarr"] / ".vimscope_outputs").exists()
    assert {p.name for p in tmp_path.iterdir()} >= {"CMU-1-Small-Region.ome.zarr", "CMU-1-Small-Region.preview.png"}
    # one computation of each share: the summary's fraction is what the closing line prints
    nucleus = result.summary["class_areas"]["Nucleus"]
    assert f"Nucleus {nucleus['area_mm2']:.4g} mm² ({100 * nucleus['fraction']:.1f}%)" in result.report
