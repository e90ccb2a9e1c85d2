"""The "Segment with vimscope" widget: runs iter_run in a thread_worker on the view, a shapes layer or the whole
slide, shows the labels layer while it runs, cancels within one batch, reports errors as notifications."""

from __future__ import annotations

import time

import numpy as np
import pytest
from vimscope_napari._widget import FIELD_OF_VIEW, SHAPES, WHOLE_SLIDE, SegmentWidget

from vimscope.errors import Cancelled, VimscopeError
from vimscope.types import Box

MODEL = "vim_test_pointwise"


@pytest.fixture
def errors(monkeypatch):
    """Error notifications the widget shows (napari.utils.notifications.show_error)."""
    import napari.utils.notifications as notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda message: shown.append(str(message)))
    return shown


def _open(make_napari_viewer, slide, tmp_path, *, where=WHOLE_SLIDE, tile=64, batch=2, target_mpp=4.0):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(slide), plugin="vimscope")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._model.value = MODEL
    widget._tile.value = tile
    widget._batch.value = batch
    widget._target_mpp.value = target_mpp
    widget._device.value = "cpu"
    widget._out.value = tmp_path / "out"
    widget._where.value = where
    widget.reset_choices()
    widget._image.value = layer
    return viewer, layer, widget


def _run(widget, timeout=50.0):
    """Start, record what the GUI saw while the run went on, and wait; returns (outcome, live, max GUI gap)."""
    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    seen = {"live_during_run": False, "stages": []}

    def on_event(item):
        event = item[0]
        seen["stages"].append(event.stage)
        if event.stage == "tiles" and widget.live_layer is not None:
            seen["live_during_run"] = seen["live_during_run"] or widget.live_layer in widget._viewer.layers

    assert widget.wait_ready(30.0), "torch and the pipeline load in the background when the widget opens"
    timer.start()
    started = time.monotonic()
    worker = widget.start()
    assert worker is not None
    worker.yielded.connect(on_event)
    outcome = widget.wait(timeout)
    ended = time.monotonic()
    timer.stop()
    assert not widget.running, "the run did not finish in time"
    seen["ticks"] = len(ticks)
    # from the start to the first tick, between ticks, from the last tick to the end: a stall anywhere shows
    gaps = np.diff([started, *ticks, ended])
    return outcome, seen, float(gaps.max())


def test_whole_slide_run_shows_labels_while_running(make_napari_viewer, tmp_path, small_slide, errors):
    viewer, slide_layer, widget = _open(make_napari_viewer, small_slide, tmp_path, where=WHOLE_SLIDE)
    outcome, seen, max_gap = _run(widget)
    assert outcome.error is None, repr(outcome.error)
    assert not errors
    assert seen["live_during_run"], "the labels layer must appear while the run goes on"
    assert seen["stages"][-1] == "done" and "tiles" in seen["stages"]
    # the event loop kept turning while the model ran (a 20 ms timer); the longest pause is napari adding the
    # labels layer (~0.3-0.8 s here; 2 s leaves room for a loaded CI machine, a blocking run would stall it all)
    assert seen["ticks"] >= 1, "the timer never fired during the run"
    assert max_gap < 2.0, f"the GUI thread stalled for {max_gap:.2f} s"
    assert widget._progress.value == 1000

    plan = outcome.last.outputs["plan"]
    (classes,) = [layer for layer in widget.result_layers if layer.name.endswith("classes")]
    assert classes._type_string == "labels"
    level0 = classes.data[0] if classes.multiscale else classes.data
    assert level0.shape == tuple(plan.out_shape) == (192, 256)  # 512 x 384 at 2 µm/px, run at 4 µm/px
    np.testing.assert_allclose(classes.scale, [4.0, 4.0])
    # output pixel (r, c) covers level-0 pixels [2c, 2c + 2): its centre is 1 µm right of level-0 pixel 2c's
    np.testing.assert_allclose(classes.translate, [1.0, 1.0])
    assert widget.live_layer is None, "the live preview is replaced by the finished output"
    assert (tmp_path / "out" / "small.ome.zarr").is_dir()


def test_field_of_view_run_covers_only_the_view(make_napari_viewer, tmp_path, medium_slide, errors):
    viewer, layer, widget = _open(make_napari_viewer, medium_slide, tmp_path, where=FIELD_OF_VIEW)
    # look at world rows 400-800 µm, cols 600-1200 µm (the slide is 1536 x 2048 µm at 2 µm/px)
    canvas_h, canvas_w = viewer.canvas.size
    viewer.scene.camera.center = (600.0, 900.0)
    viewer.scene.camera.zoom = min(canvas_w / 600.0, canvas_h / 400.0)
    half_h, half_w = canvas_h / viewer.scene.camera.zoom / 2, canvas_w / viewer.scene.camera.zoom / 2
    (box,) = widget.region(layer)
    # level-0 pixel-edge coordinates: world / 2 µm + 0.5, rounded outwards
    assert box.x == int(np.floor((900 - half_w) / 2 + 0.5)) and box.y == int(np.floor((600 - half_h) / 2 + 0.5))
    assert box.x1 == int(np.ceil((900 + half_w) / 2 + 0.5)) and box.y1 == int(np.ceil((600 + half_h) / 2 + 0.5))
    assert box.w < 1024 and box.h < 768

    outcome, seen, _ = _run(widget)
    assert outcome.error is None, repr(outcome.error)
    plan = outcome.last.outputs["plan"]
    fov_out = box.scale(plan.scale)
    assert plan.tiles, "the view holds tissue"
    assert all(t.box.intersect(fov_out) is not None for t in plan.tiles)
    whole = (plan.out_shape[0] // plan.core + 1) * (plan.out_shape[1] // plan.core + 1)
    assert len(plan.tiles) < whole / 2


def test_shapes_layer_region(make_napari_viewer, tmp_path, small_slide, errors):
    viewer, layer, widget = _open(make_napari_viewer, small_slide, tmp_path, where=SHAPES)
    widget.start()
    assert errors and "shapes layer" in errors[-1], "no shapes layer: an error notification, no run"
    assert not widget.running
    rect = np.array([[80, 160], [80, 560], [320, 560], [320, 160]], float)  # world µm (row, col)
    viewer.add_shapes([rect], shape_type="rectangle", name="roi")
    widget.reset_choices()
    widget._image.value = layer
    widget._shapes.value = viewer.layers["roi"]
    region = widget.region(layer)
    assert region.bounds == (80.5, 40.5, 280.5, 160.5)  # level-0 pixel edges (x, y) at 2 µm/px
    outcome, _, _ = _run(widget)
    assert outcome.error is None, repr(outcome.error)
    plan = outcome.last.outputs["plan"]
    assert plan.tiles
    inside = Box(40, 20, 101, 61)  # the region in output pixels (2 level-0 px each)
    assert all(t.box.intersect(inside) is not None for t in plan.tiles)


def test_cancel_stops_within_one_batch(make_napari_viewer, tmp_path, medium_slide, errors):
    from napari.utils import notifications

    viewer, layer, widget = _open(
        make_napari_viewer, medium_slide, tmp_path, where=WHOLE_SLIDE, tile=64, batch=1, target_mpp=2.0
    )
    infos: list[str] = []
    original = notifications.show_info
    notifications.show_info = lambda message: infos.append(str(message))
    try:
        worker = widget.start()
        worker.yielded.connect(lambda item: widget.cancel() if item[0].stage == "tiles" else None)
        outcome = widget.wait(50.0)
    finally:
        notifications.show_info = original
    assert isinstance(outcome.error, Cancelled), repr(outcome.error)
    assert outcome.batches_after_cancel <= 1, "the pipeline must stop within one batch of the cancel"
    assert outcome.last.done < outcome.last.total
    assert any("cancelled" in m for m in infos) and not errors
    assert widget._run.enabled and not widget._cancel.enabled
    assert widget.live_layer is not None and widget.live_layer in viewer.layers, "partial results stay visible"
    assert (tmp_path / "out" / "medium.ome.zarr.partial").is_dir(), "kept for resume"


def test_pipeline_errors_become_notifications(make_napari_viewer, tmp_path, small_slide, errors):
    viewer, layer, widget = _open(make_napari_viewer, small_slide, tmp_path, where=WHOLE_SLIDE)
    widget._model.value = widget._model.choices[0]
    widget._weights.value = tmp_path / "missing.safetensors"
    outcome, _, _ = _run(widget)
    assert isinstance(outcome.error, VimscopeError), repr(outcome.error)
    assert errors == [str(outcome.error)], "a user error is one clear line"
    assert "missing.safetensors" in errors[0]
    assert widget._status.value == "failed" and widget._run.enabled

    # anything else that breaks a run is a notification too, never an exception in the event loop
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a weights file")
    widget._weights.value = bad
    outcome, _, _ = _run(widget)
    assert outcome.error is not None and len(errors) == 2
    assert "vimscope run failed" in errors[1] or "weights.safetensors" in errors[1]
