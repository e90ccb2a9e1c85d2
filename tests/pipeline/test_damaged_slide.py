"""One damaged JPEG tile of the demo SVS costs that tile's pixels only, and the run lists it (issue: reliability).

500 random bytes in level-0 tile 35 (level-0 box 1200, 720, 240, 240). Before: the computed overview around it read
as zeros for a 2220 x 1888 strip, 14 of 29 tissue tiles were skipped and nothing was reported.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.io.conftest import demo_path
from tests.io.hostile import corrupt_segment
from tests.pipeline.helpers import read_store
from vimscope.pipeline import PipelineConfig, run

SETTINGS = dict(model="vim_test", device="cpu", target_mpp=2.0, outputs=["classes", "probabilities"], workers=1)
SOURCE = [1200, 720, 240, 240]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    src = demo_path()
    bad = tmp_path_factory.mktemp("damaged") / "bad.svs"
    shutil.copy(src, bad)
    corrupt_segment(bad, 35, seed=1)
    clean = run(src, PipelineConfig.load(**SETTINGS), out=tmp_path_factory.mktemp("clean"))
    damaged = run(bad, PipelineConfig.load(**SETTINGS), out=tmp_path_factory.mktemp("bad"))
    return clean, damaged


def test_every_tissue_tile_runs_and_the_damage_is_listed(runs):
    clean, damaged = runs
    tiles, listed = damaged.summary["tiles"], damaged.summary["damaged_tiles"]
    assert tiles["planned"] == tiles["run"] == clean.summary["tiles"]["planned"]
    assert [s["box0"] for s in listed["sources"]] == [SOURCE] and listed["source_count"] == 1
    assert listed["count"] == tiles["damaged"] >= 1 and len(listed["boxes"]) == listed["count"]
    m = damaged.summary["halo"] * 2.0 / damaged.summary["slide_mpp"] + 1  # the halo in level-0 px
    for x, y, w, h in listed["boxes"]:  # every output tile listed reads the damaged tile (core or halo)
        assert x - m < SOURCE[0] + SOURCE[2] and SOURCE[0] < x + w + m
        assert y - m < SOURCE[1] + SOURCE[3] and SOURCE[1] < y + h + m
    report = damaged.report
    assert "\n" not in report and "1200,720,240,240" in report and f"{listed['count']} output tile(s)" in report


def test_only_the_damaged_tiles_pixels_differ_from_the_clean_run(runs):
    clean, damaged = runs
    a, b = read_store(clean.paths["zarr"]), read_store(damaged.paths["zarr"])
    px = 2.0 / damaged.summary["slide_mpp"]  # level-0 px per output px
    x0, x1 = SOURCE[0] / px, (SOURCE[0] + SOURCE[2]) / px
    y0, y1 = SOURCE[1] / px, (SOURCE[1] + SOURCE[3]) / px
    outer = np.zeros(a["classes"].shape, bool)  # the damaged tile's output pixels, rounded outwards (+1 px)
    outer[int(y0) - 1 : int(np.ceil(y1)) + 1, int(x0) - 1 : int(np.ceil(x1)) + 1] = True
    inner = (slice(int(np.ceil(y0)), int(y1)), slice(int(np.ceil(x0)), int(x1)))
    np.testing.assert_array_equal(a["classes"][~outer], b["classes"][~outer])
    assert (b["probabilities"][(slice(None), *inner)] == 0).all() and (b["classes"][inner] == 0).all()
    assert outer.sum() < 0.02 * outer.size  # 61 x 61 of 554 x 741 px: under 1 %
