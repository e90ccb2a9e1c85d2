"""Interrupted runs: kill -9 mid-slide, then resume; cancel through the token; the result never changes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.pipeline.helpers import store_digest
from vimscope.errors import Cancelled
from vimscope.pipeline import PipelineConfig, iter_run, run
from vimscope.pipeline.record import RECORD_NAME
from vimscope.types import Box, CancelToken

SETTINGS = dict(
    model="vim_test_pointwise",
    device="cpu",
    tile=128,
    halo=16,
    chunk=128,
    stripe_width=320,
    band_height=192,
    tissue=False,
    outputs=["image", "classes", "probabilities", "preview", "summary"],
    workers=2,
    batch_size=4,
)

# Runs iter_run and kills its own process with SIGKILL (no cleanup of any kind) after N batches.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from vimscope.pipeline import PipelineConfig, iter_run
    slide, out, settings, after = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    batches = 0
    for event in iter_run(slide, PipelineConfig.load(**settings), out=out):
        if event.stage == "tiles":
            batches += 1
            if batches == after:
                os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture(scope="module")
def reference(small_slide, tmp_path_factory):
    """Uninterrupted runs, one per stitch mode."""
    out = {}
    for mode in ("crop", "cosine"):
        folder = tmp_path_factory.mktemp(f"reference-{mode}")
        result = run(small_slide, PipelineConfig.load(**SETTINGS, stitch=mode), out=folder)
        out[mode] = (result, store_digest(result.paths["zarr"]))
    return out


@pytest.mark.parametrize("mode", ["crop", "cosine"])
def test_killed_run_resumes_to_identical_bytes(mode, small_slide, tmp_path, reference):
    settings = {**SETTINGS, "stitch": mode}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(small_slide), str(tmp_path), json.dumps(settings), "9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr  # it really died by SIGKILL, mid-slide
    partial = tmp_path / "small-700x900.ome.zarr.partial"
    record = json.loads((partial / RECORD_NAME).read_text())
    total_bands = reference[mode][0].summary["tiles"]["bands"]
    assert 0 < len(record["done_bands"]) < total_bands
    assert not (tmp_path / "small-700x900.ome.zarr").exists()  # nothing under the final name

    events = list(iter_run(small_slide, PipelineConfig.load(**settings), out=tmp_path))
    result = events[-1].outputs["result"]
    assert any("resumed" in e.message for e in events if e.stage == "plan")
    assert result.summary["tiles"]["run"] < result.summary["tiles"]["planned"]  # done bands were not redone
    assert not partial.exists() and not (result.paths["zarr"] / RECORD_NAME).exists()
    assert store_digest(result.paths["zarr"]) == reference[mode][1]


def test_cancel_stops_within_a_batch_and_resumes(small_slide, tmp_path, reference):
    token = CancelToken()
    settings = PipelineConfig.load(**SETTINGS, stitch="crop")
    seen = []
    with pytest.raises(Cancelled, match="rerun to resume"):
        for event in iter_run(small_slide, settings, out=tmp_path, cancel=token):
            seen.append(event.stage)
            if event.stage == "band":
                token.cancel()
    assert seen.count("band") == 1 and seen[-1] == "band"  # nothing ran after the cancel
    partial = tmp_path / "small-700x900.ome.zarr.partial"
    assert json.loads((partial / RECORD_NAME).read_text())["done_bands"]
    result = run(small_slide, settings, out=tmp_path)
    assert store_digest(result.paths["zarr"]) == reference["crop"][1]


def test_finished_slide_is_skipped_unless_overwrite(small_slide, tmp_path):
    settings = PipelineConfig.load(**{**SETTINGS, "outputs": ["classes"]})
    corner = [Box(0, 0, 150, 150)]  # four tiles are enough here
    first = run(small_slide, settings, out=tmp_path, region=corner)
    assert not first.skipped
    again = run(small_slide, settings, out=tmp_path, region=corner)
    assert again.skipped and "skipped" in again.report
    redo = run(small_slide, settings.replace(overwrite=True), out=tmp_path, region=corner)
    assert not redo.skipped and redo.summary["tiles"]["run"] == redo.summary["tiles"]["planned"]
