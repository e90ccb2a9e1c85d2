"""preview.png (thumbnail, overlay, legend) and summary.json (physical areas, counts, damaged tiles, versions),
both written atomically; the writers import without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vimscope.config import ClassSpec
from vimscope.types import Box
from vimscope.writers.preview import write_preview
from vimscope.writers.summary import build_summary, class_areas, write_summary

CLASSES = [ClassSpec("background", [0, 0, 0]), ClassSpec("tumor", [255, 0, 0]), ClassSpec("stroma", [0, 0, 255])]


def test_preview_blends_classes_and_draws_a_legend(tmp_path):
    thumb = np.full((200, 300, 3), 200, np.uint8)
    cmap = np.zeros((100, 150), np.uint8)  # half the thumbnail's size: scaled up by nearest neighbour
    cmap[:, 50:100] = 1
    cmap[:, 100:] = 2
    path = write_preview(tmp_path / "preview.png", thumb, cmap, CLASSES, title="slide")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (200, 300 + 220, 3)
    assert tuple(img[50, 20]) == (200, 200, 200)  # background: the thumbnail, untouched
    r, g, b = (int(v) for v in img[50, 150])
    assert r > 200 and g < 150 and b < 150  # tumor: tinted red
    assert img[50, 250, 2] > img[50, 250, 0]  # stroma: tinted blue
    legend = img[:, 300:].reshape(-1, 3)
    assert ((legend == (255, 0, 0)).all(1)).any() and ((legend == (0, 0, 255)).all(1)).any()
    assert not list(tmp_path.glob(".*tmp"))


def test_preview_shrinks_large_thumbnails(tmp_path):
    thumb = np.zeros((3000, 1500, 3), np.uint8)
    path = write_preview(tmp_path / "p.png", thumb, np.ones((300, 150), np.uint8), CLASSES, max_size=512)
    assert Image.open(path).size == (256 + 220, 512)


def test_summary_reports_physical_areas_and_faults(tmp_path):
    summary = build_summary(
        slide="/data/slide.svs",
        model={"name": "vim_test", "license": "Apache-2.0", "trained": False, "checkpoint_sha256": None},
        classes=CLASSES,
        class_pixels={"background": 1000, "tumor": 3000, "stroma": 6000},
        pixel_size=0.5,
        unit="µm",
        tissue_pixels=9000,
        object_counts={"nuclei": np.int64(42)},
        tiles={"planned": 12, "done": 12, "damaged": 1},
        damaged_tiles=[Box(1024, 0, 512, 512)],
        timings={"total": 12.34567, "inference": 8.0},
        outputs={"zarr": tmp_path / "slide.ome.zarr"},
    )
    path = write_summary(tmp_path / "summary.json", summary)
    data = json.loads(path.read_text())
    tumor = data["class_areas"]["tumor"]
    assert tumor["pixels"] == 3000 and tumor["area_mm2"] == pytest.approx(3000 * 0.25e-6)
    assert tumor["fraction"] == pytest.approx(0.3)
    assert data["tissue"]["area_mm2"] == pytest.approx(9000 * 0.25e-6)
    assert data["objects"] == {"nuclei": 42}
    assert data["damaged_tiles"] == {"count": 1, "boxes": [[1024, 0, 512, 512]]}
    assert data["timings_s"]["total"] == 12.346
    assert data["model"]["license"] == "Apache-2.0" and data["versions"]["numpy"] == np.__version__
    assert data["outputs"]["zarr"].endswith("slide.ome.zarr")


def test_map_units_give_square_metres_and_no_size_gives_pixels():
    geo = class_areas([10, 20, 30], CLASSES, pixel_size=0.3, unit="m")
    assert geo["stroma"]["area_m2"] == pytest.approx(30 * 0.09)
    plain = class_areas([10, 20, 30], CLASSES, pixel_size=None, unit="µm")
    assert plain["tumor"]["area_px2"] == 20


def test_writers_and_postprocess_import_without_torch():
    code = (
        "import sys\n"
        "import vimscope.writers.omezarr, vimscope.writers.geojson, vimscope.writers.tables, vimscope.writers.gpkg\n"
        "import vimscope.writers.geotiff, vimscope.writers.ometiff, vimscope.writers.preview\n"
        "import vimscope.writers.summary, vimscope.vector.regions, vimscope.vector.roi\n"
        "import vimscope.instances.cells, vimscope.instances.detect\n"
        "from vimscope.writers.summary import software_versions\n"
        "software_versions()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
