"""Nuclei models: instances labelled on the stitched maps, whole across tile and band seams, exported."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from tests.pipeline.helpers import read_store
from vimscope.config import ClassSpec, ModelSpec
from vimscope.pipeline import PipelineConfig, run
from vimscope.types import Box


class BlobModel(torch.nn.Module):
    """Per-pixel nucleus logits from the red channel: blobs 20-40 px wide wherever the texture peaks."""

    def __init__(self, output="nuclei"):
        super().__init__()
        self.spec = ModelSpec(
            name="blobs",
            tile=128,
            halo=16,
            output=output,
            classes=[ClassSpec("background", [0, 0, 0]), ClassSpec("Nucleus", [230, 25, 75])],
            postprocess={"max_size": 96, "min_area": 16},
        )

    def forward(self, x):
        red = x[:, :1] * 0.229 + 0.485  # back to 0-1
        nucleus = 40.0 * (red - 200 / 255)
        return {
            "logits": torch.cat([torch.zeros_like(nucleus), nucleus], dim=1),
            "boundary": torch.full_like(nucleus, -10.0),
            "distance": torch.full_like(nucleus, 1.0),
        }


def test_nuclei_are_whole_across_seams_and_exported(small_slide, tmp_path):
    cfg = PipelineConfig.load(
        device="cpu", tissue=False, chunk=128, band_height=192, outputs=["classes", "geojson", "summary"]
    )
    result = run(small_slide, cfg, out=tmp_path, model=BlobModel())
    got = read_store(result.paths["zarr"])
    labels, classes = got["nuclei"], got["classes"]
    blobs, n_blobs = ndi.label(classes == 1)
    assert n_blobs >= 15
    ids = np.unique(labels[labels > 0])
    assert len(ids) == result.summary["objects"]["Nucleus"]
    # every object is one blob and every big enough blob is one object: nothing split at tile or band seams
    sizes = np.bincount(blobs.ravel())
    big = {b for b in range(1, n_blobs + 1) if sizes[b] >= 16}
    assert len(ids) == len(big)
    for i in ids:
        assert len(np.unique(blobs[labels == i])) == 1
    assert (classes[labels > 0] > 0).all()  # instances only where the class map says nucleus
    detections = json.loads(result.paths["nuclei_geojson"].read_text())["features"]
    assert len(detections) == len(ids)
    assert {f["properties"]["objectType"] for f in detections} == {"detection"}
    assert result.paths["objects"].exists()
    # an instance model's classes are its detections: no class-region annotations duplicating them
    assert "geojson" not in result.paths and not list(tmp_path.glob("*[!i].geojson"))


def test_a_repeated_run_writes_the_same_detections(small_slide, tmp_path):
    """Detection and class-region ids are derived from the output (stem, label or place in the output order), so a
    rerun (or a resumed run) writes byte-identical GeoJSON."""
    cfg = PipelineConfig.load(device="cpu", tissue=False, chunk=128, outputs=["geojson"])
    first = run(small_slide, cfg, out=tmp_path / "a", model=BlobModel()).paths
    second = run(small_slide, cfg, out=tmp_path / "b", model=BlobModel()).paths
    features = json.loads(first["nuclei_geojson"].read_text())["features"]
    assert len(features) >= 2 and len({f["id"] for f in features}) == len(features)
    assert first["nuclei_geojson"].read_bytes() == second["nuclei_geojson"].read_bytes()
    regions = run(small_slide, cfg, out=tmp_path / "c", model=BlobModel(output="classes")).paths["geojson"]
    again = run(small_slide, cfg, out=tmp_path / "d", model=BlobModel(output="classes")).paths["geojson"]
    assert len(json.loads(regions.read_text())["features"]) >= 2 and regions.read_bytes() == again.read_bytes()


class SlowBlobModel(BlobModel):
    """BlobModel that takes its time: the followers then read every band as soon as they are allowed to."""

    def forward(self, x):
        import time

        time.sleep(0.05)
        return super().forward(x)


def _regions(path) -> list:
    """Class regions of a GeoJSON without their ids."""
    return [(f["properties"], f["geometry"]) for f in json.loads(path.read_text())["features"]]


@pytest.mark.parametrize("stitch", ["crop", "cosine"])
def test_instances_beside_the_loop_equal_instances_after_it(stitch, small_slide, tmp_path, monkeypatch):
    """Instances and class regions run band by band beside the tile loop (``pipeline.follow``); the outputs
    are those of the same steps run after the loop (also when blending makes a band's last rows wait for the
    band below), and the instance labels have their pyramid."""
    import zarr

    from tests.pipeline.helpers import store_digest
    from vimscope.pipeline import follow
    from vimscope.writers.pyramid import downsample_mode

    # chunks of 64 px: instance cells of 256 rows and class-region bands of 576 rows, read while the loop runs
    cfg = PipelineConfig.load(
        device="cpu", tissue=False, chunk=64, band_height=192, stitch=stitch, outputs=["classes", "geojson", "summary"]
    )
    beside = run(small_slide, cfg, out=tmp_path / "beside", model=SlowBlobModel())
    regions = run(small_slide, cfg, out=tmp_path / "regions", model=SlowBlobModel(output="classes"))
    assert "follow_instances" in beside.summary["timings_s"] and "follow_geojson" in regions.summary["timings_s"]
    monkeypatch.setattr(follow.Followers, "start", lambda self, name, fn: None)  # no jobs: all after the loop
    after = run(small_slide, cfg, out=tmp_path / "after", model=BlobModel())
    regions_after = run(small_slide, cfg, out=tmp_path / "regions_after", model=BlobModel(output="classes"))
    assert "follow_instances" not in after.summary["timings_s"]
    for key in ("nuclei_geojson", "objects"):
        assert beside.paths[key].read_bytes() == after.paths[key].read_bytes()
    assert _regions(regions.paths["geojson"]) == _regions(regions_after.paths["geojson"])
    assert store_digest(beside.paths["zarr"]) == store_digest(after.paths["zarr"])
    nuclei = zarr.open_group(str(beside.paths["zarr"]), mode="r")["nuclei"]  # no image copy: a standalone image
    level0, level1 = np.asarray(nuclei["0"]), np.asarray(nuclei["1"])
    assert level1.any() and np.array_equal(level1, downsample_mode(level0))


def test_a_cancelled_run_stops_its_followers_and_resumes(mini_slide, tmp_path):
    import threading

    from vimscope.errors import Cancelled
    from vimscope.pipeline import iter_run
    from vimscope.types import CancelToken

    cfg = PipelineConfig.load(device="cpu", tissue=False, chunk=128, band_height=192, outputs=["geojson"])
    reference = run(mini_slide, cfg, out=tmp_path / "reference", model=BlobModel())
    token = CancelToken()
    try:
        for event in iter_run(mini_slide, cfg, out=tmp_path / "cut", cancel=token, model=BlobModel()):
            if event.stage == "tiles":  # the first batch written: most of the slide is still to come
                token.cancel()
    except Cancelled:
        pass
    else:
        raise AssertionError("the run was not cancelled")
    assert not [t for t in threading.enumerate() if t.name.startswith(("vimscope-instances", "vimscope-geojson"))]
    assert not list((tmp_path / "cut").glob("*.geojson*")) and not list((tmp_path / "cut").glob("*.parquet*"))
    resumed = run(mini_slide, cfg, out=tmp_path / "cut", model=BlobModel())
    assert len(json.loads(reference.paths["nuclei_geojson"].read_text())["features"]) >= 5
    assert resumed.summary["tiles"]["run"] < resumed.summary["tiles"]["planned"]
    assert resumed.paths["nuclei_geojson"].read_bytes() == reference.paths["nuclei_geojson"].read_bytes()
    assert resumed.paths["objects"].read_bytes() == reference.paths["objects"].read_bytes()


def _detections(result) -> np.ndarray:
    import shapely

    features = json.loads(result.paths["nuclei_geojson"].read_text())["features"]
    return np.array([shapely.geometry.shape(f["geometry"]) for f in features], dtype=object)


def test_instance_outlines_stay_inside_the_image(small_slide, tmp_path):
    """At 0.6 µm/px the output grid (750 x 584 px of 1.2 level-0 px) ends at y = 700.8 on a 700 px high image:
    outlines of the objects in its last row are cut to the image."""
    import shapely

    cfg = PipelineConfig.load(device="cpu", tissue=False, chunk=128, target_mpp=0.6, outputs=["classes", "geojson"])
    result = run(small_slide, cfg, out=tmp_path, model=BlobModel())
    labels = read_store(result.paths["zarr"])["nuclei"]
    assert labels.shape == (584, 750) and labels[-1].any()  # objects reach the grid's last row
    geoms = _detections(result)
    bounds = shapely.bounds(geoms)
    assert bounds[:, 2].max() <= 900 and bounds[:, 3].max() == 700  # 700.8 before clipping
    assert shapely.is_valid(geoms).all() and len(geoms) == len(np.unique(labels[labels > 0]))


def test_instances_stay_in_the_foreground_and_the_region(small_slide, tmp_path):
    """Outside the region nothing is written (all probabilities 0): no instance may grow there, and outlines,
    which hold the pixels whose centres lie in the region, are cut to it."""
    import shapely

    from vimscope.vector.roi import RegionMask

    region = shapely.Polygon([(150, 0), (900, 0), (900, 700), (400, 700)])
    cfg = PipelineConfig.load(device="cpu", tissue=False, chunk=128, target_mpp=0.6, outputs=["classes", "geojson"])
    result = run(small_slide, cfg, out=tmp_path, model=BlobModel(), region=region)
    got = read_store(result.paths["zarr"])
    labels, classes = got["nuclei"], got["classes"]
    assert (classes[labels > 0] > 0).all()
    outside = ~RegionMask(region, 1.2).mask(Box(0, 0, 750, 584))  # level-0 px per output px: 0.6 / 0.5
    assert outside.any() and not labels[outside].any()
    geoms = _detections(result)
    assert len(geoms) == len(np.unique(labels[labels > 0])) >= 10
    assert shapely.intersects(geoms, shapely.LineString([(150, 0), (400, 700)])).any()  # objects on the slant
    assert shapely.covered_by(geoms, region.buffer(1e-6)).all() and shapely.is_valid(geoms).all()


def test_cells_labelled_in_several_threads_write_what_one_thread_writes(small_slide, tmp_path, monkeypatch):
    """Cells are labelled and rendered in a pool on a large host (``cell_threads``), painted and written in id
    order: the bytes of every output are those of one thread."""
    from tests.pipeline.helpers import store_digest
    from vimscope.pipeline import instances

    cfg = PipelineConfig.load(device="cpu", tissue=False, chunk=64, band_height=192, outputs=["classes", "summary"])
    runs = {}
    for threads in (1, 3):
        monkeypatch.setattr(instances, "cell_threads", lambda threads=threads: threads)
        runs[threads] = run(small_slide, cfg, out=tmp_path / str(threads), model=BlobModel())
    one, three = runs[1], runs[3]
    assert one.summary["objects"]["Nucleus"] >= 15
    assert one.summary["objects"] == three.summary["objects"]
    for key in ("nuclei_geojson", "objects"):
        assert one.paths[key].read_bytes() == three.paths[key].read_bytes()
    assert store_digest(one.paths["zarr"]) == store_digest(three.paths["zarr"])


def test_cells_narrower_than_the_slide_find_the_same_objects(small_slide, tmp_path, monkeypatch):
    """Wide slides are labelled in cells of at most ``cell_width`` columns (``exports.instances``): objects that
    straddle a column border are still whole, once; the same pixels form the same objects as with cells of the
    whole width, numbered in the cells' row-major order."""
    from tests.pipeline.helpers import read_store
    from vimscope.pipeline import instances

    cfg = PipelineConfig.load(device="cpu", tissue=False, chunk=64, band_height=192, outputs=["classes", "summary"])
    wide = run(small_slide, cfg, out=tmp_path / "wide", model=BlobModel())
    whole = instances.run_instances
    monkeypatch.setattr(instances, "cell_threads", lambda: 3)
    monkeypatch.setattr(
        instances, "run_instances", lambda ctx, cell_height, **kw: whole(ctx, cell_height, **kw | {"cell_width": 192})
    )
    narrow = run(small_slide, cfg, out=tmp_path / "narrow", model=BlobModel())
    a, b = read_store(wide.paths["zarr"])["nuclei"], read_store(narrow.paths["zarr"])["nuclei"]
    assert narrow.summary["objects"] == wide.summary["objects"] and wide.summary["objects"]["Nucleus"] >= 15
    assert ((a > 0) == (b > 0)).all()
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)  # one narrow id per wide id and back
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    assert not np.array_equal(a, b)  # numbered in another order: the narrow cells did run
