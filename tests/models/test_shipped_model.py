"""The default model that ships in the package: trained, licensed, small enough, and it finds nuclei."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from vimscope.cli.main import main
from vimscope.demo import demo_slide_path
from vimscope.types import Box

WEIGHTS = Path(str(resources.files("vimscope") / "weights"))


def test_default_model_is_the_shipped_trained_nuclei_model():
    from vimscope.models import load_spec
    from vimscope.pipeline.config import DEFAULT_MODEL

    spec = load_spec(DEFAULT_MODEL)
    assert spec.trained and spec.output == "nuclei" and spec.mpp == 0.25
    assert "CC-BY-NC-SA-4.0" in spec.license and "Kumar" in spec.license
    weights = WEIGHTS / spec.weights
    assert weights.stat().st_size <= 16 * 2**20
    assert "CC BY-NC-SA 4.0" in (WEIGHTS / "WEIGHTS_LICENSE").read_text()


def test_info_prints_the_model_licence(capsys):
    assert main(["info", "--model", "vim_tiny_nuclei", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["license"].startswith("CC-BY-NC-SA-4.0")


def test_shipped_model_finds_dark_nuclei_on_the_demo_slide(tmp_path):
    """On a region of the demo slide the instances are many, nucleus-sized and darker than their surroundings."""
    slide = demo_slide_path()
    if slide is None:
        pytest.fail("the demo slide is missing: run `bash .ci/setup`")
    import zarr

    from vimscope.pipeline import PipelineConfig, run

    config = PipelineConfig.load(device="cpu")  # the default model
    result = run(slide, config, out=tmp_path, region=[Box(900, 1300, 256, 200)])
    assert result.summary["model"]["name"] == "vim_tiny_nuclei" and result.summary["model"]["trained"]
    store = zarr.open_group(str(result.paths["zarr"]), mode="r")
    y, x, h, w = 2600, 1800, 400, 512  # the region at 0.25 µm/px (the slide is 0.499 µm/px)
    nuclei = np.asarray(store["labels/nuclei/0"][y : y + h, x : x + w])
    grey = np.asarray(store["0"][:, y : y + h, x : x + w]).mean(0)
    ids = np.unique(nuclei[nuclei > 0])
    assert len(ids) >= 20, f"only {len(ids)} nuclei found"
    areas_um2 = np.bincount(nuclei.ravel())[ids] * 0.25**2
    assert 10 < np.median(areas_um2) < 120  # nucleus-sized, in µm²
    inside, outside = grey[nuclei > 0].mean(), grey[(nuclei == 0) & (grey < 230)].mean()
    assert inside < outside - 30, (inside, outside)
