"""The "Segment with vimscope" dock widget: a thin face over ``vimscope.pipeline.iter_run``.

The run happens in a napari ``thread_worker``: each ``Progress`` event moves the progress bar and fills the live
labels layer in; Cancel sets the run's ``CancelToken``, which the pipeline checks between batches; errors become
notifications. The GUI thread only copies small strided blocks into the preview, so it never waits on the model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from vimscope_napari._geometry import field_of_view_box, shapes_region
from vimscope_napari._live import LiveLabels
from vimscope_napari._outputs import class_colormap, labels_data, output_info, output_layers

from vimscope.errors import Cancelled, RegionError, VimscopeError
from vimscope.types import Box, CancelToken, Progress

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

FIELD_OF_VIEW, SHAPES, WHOLE_SLIDE = "field of view", "shapes layer", "whole slide"
DEFAULT_MODEL = "(pipeline default)"
REFRESH_SECONDS = 0.3  # at most this often the live labels layer is redrawn
MAX_WIDTH = 380  # pixels


@dataclasses.dataclass
class RunOutcome:
    """What the worker returns: the last event, or the error that ended the run (never raised across threads)."""

    last: Progress | None = None
    error: BaseException | None = None
    events: int = 0
    batches_after_cancel: int = 0  # tile batches that finished after the worker saw the cancel request


def _model_choices(_widget=None) -> list[str]:
    names: list[str] = []
    try:
        from vimscope.models import list_models

        names = list(list_models())
    except Exception:  # models not importable (no torch yet): the packaged configs still name them
        try:
            from vimscope.config import packaged_names

            names = packaged_names("models")
        except Exception:
            names = []
    return [DEFAULT_MODEL, *names]


def _warm_imports() -> None:
    """Import, off the GUI thread, what a run needs: torch and the pipeline (loading their shared libraries holds
    the GIL for up to a second) and pandas (napari's labels layer imports it on the GUI thread otherwise)."""
    import importlib

    for name in ("pandas", "torch", "vimscope.pipeline.engine"):
        try:
            importlib.import_module(name)
        except Exception:  # pragma: no cover - the run itself reports a broken install
            pass
    # napari maps direct label colours with numba functions compiled on first use, per dtype (seconds each)
    try:
        from napari.utils.colormaps import DirectLabelColormap

        colormap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: (1, 0, 0, 1)})
        for dtype in (np.uint8, np.uint32):
            colormap.map(np.arange(3, dtype=dtype))
            colormap._data_to_texture(np.arange(3, dtype=dtype))
    except Exception:  # pragma: no cover - only a speed-up
        pass


def segment_generator(slide, config, out: Path, region, cancel: CancelToken):
    """Drive ``iter_run`` and pass each event on with the block of classes it just wrote (read off the GUI thread).

    Yields ``(event, live, box, block)``; returns a ``RunOutcome`` (errors are returned, not raised, because
    superqt's worker swallows RuntimeError, which is what torch raises).
    """
    from vimscope.pipeline import iter_run

    _warm_imports()
    outcome = RunOutcome()
    live: LiveLabels | None = None
    threads = _leave_a_core_for_the_gui()
    events = iter_run(slide, config, out=out, region=region, cancel=cancel)
    try:
        for event in events:
            outcome.last = event
            outcome.events += 1
            if cancel.cancelled and event.stage == "tiles":
                outcome.batches_after_cancel += 1
            classes = event.outputs.get("classes") if event.outputs else None
            if live is None and classes is not None:
                live = LiveLabels(classes)
            box = block = None
            if live is not None and event.box is not None:
                box = _output_box(event.box, event.outputs.get("scale", 1.0), live.shape)
                if box is not None:
                    block = live.read_block(box)
            yield event, live, box, block
    except GeneratorExit:  # the worker was dropped (viewer closed): let the pipeline clean up, then stop
        raise
    except BaseException as e:  # noqa: BLE001 - handed to the GUI thread as a notification
        outcome.error = e
    finally:
        events.close()
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
    return outcome


def _leave_a_core_for_the_gui() -> int | None:
    """Run torch's CPU ops on all cores but one, so drawing layers never waits for a free core; returns the old
    thread count to restore."""
    import os

    import torch

    old = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < 2 or old < cores:
        return None
    torch.set_num_threads(cores - 1)
    return old


def _output_box(box0: Box, scale: float, shape: tuple[int, int]) -> Box | None:
    """A level-0 box in the output grid (``scale`` level-0 px per output px), clipped to it."""
    out = box0.scale(float(scale) if scale else 1.0)
    return out.intersect(Box(0, 0, shape[1], shape[0]))


class SegmentWidget(Container):
    """Model, resolution, tile, batch, device and output folder; run on the view, a shapes layer or the slide."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._image = ComboBox(label="slide", choices=self._slide_layers, nullable=True)
        self._model = ComboBox(label="model", choices=_model_choices, value=DEFAULT_MODEL)
        self._weights = FileEdit(label="weights", mode="r", filter="*.safetensors *.pt *.pth", nullable=True)
        self._target_mpp = FloatSpinBox(label="target µm/px", value=0.0, min=0.0, max=1e6, step=0.25)
        self._target_mpp.tooltip = "resolution to run at, in µm (or map units) per pixel; 0: the model's own"
        self._tile = SpinBox(label="tile size", value=0, min=0, max=4096, step=64)
        self._tile.tooltip = "tile side in pixels, halo included; 0: the model's own"
        self._batch = SpinBox(label="batch size", value=4, min=1, max=512)
        self._device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self._out = FileEdit(label="output", mode="d", value=Path.home() / "vimscope-output")
        self._where = ComboBox(label="run on", choices=[FIELD_OF_VIEW, SHAPES, WHOLE_SLIDE], value=FIELD_OF_VIEW)
        self._shapes = ComboBox(label="shapes", choices=self._shapes_layers, nullable=True)
        self._tissue = CheckBox(text="tissue only (skip glass / nodata)", value=True)
        self._overwrite = CheckBox(text="overwrite earlier output", value=True)
        self._run = PushButton(text="Run")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", min=0, max=1000, value=0)
        self._status = Label(label="", value="")
        self.extend(
            [
                self._image,
                self._model,
                self._weights,
                self._target_mpp,
                self._tile,
                self._batch,
                self._device,
                self._out,
                self._where,
                self._shapes,
                self._tissue,
                self._overwrite,
                self._run,
                self._cancel,
                self._progress,
                self._status,
            ]
        )
        self.native.setMaximumWidth(MAX_WIDTH)  # leave the canvas its room when docked
        self._run.changed.connect(self.start)
        self._cancel.changed.connect(self.cancel)
        self._where.changed.connect(self._update_visibility)
        self._update_visibility()
        self.worker = None
        self.token: CancelToken | None = None
        self.live_layer = None
        self.result_layers: list = []
        self.outcome: RunOutcome | None = None
        self._last_refresh = 0.0
        self._start_warmup()

    def _start_warmup(self):
        """Load torch and the pipeline in the background while the user fills the form in."""
        from napari.qt.threading import create_worker

        self._ready = False
        self._warmup = create_worker(_warm_imports, _start_thread=False)
        self._warmup.finished.connect(self._on_ready)
        self._warmup.start()

    def _on_ready(self):
        self._ready = True
        self._warmup = None

    # -- choices ---------------------------------------------------------------------------------------------------
    def _slide_layers(self, _widget=None) -> list:
        from napari.layers import Image

        return [layer for layer in self._viewer.layers if isinstance(layer, Image) and "vimscope" in layer.metadata]

    def _shapes_layers(self, _widget=None) -> list:
        from napari.layers import Shapes

        return [layer for layer in self._viewer.layers if isinstance(layer, Shapes)]

    def _update_visibility(self, *_):
        self._shapes.visible = self._where.value == SHAPES

    # -- building the run ------------------------------------------------------------------------------------------
    def config(self):
        """The pipeline config the widget's fields describe (the packaged defaults for everything else).

        Raises ``ConfigError`` (shown as a notification) for values the pipeline would reject.
        """
        from vimscope.pipeline import PipelineConfig

        changes: dict[str, Any] = {
            "batch_size": int(self._batch.value),
            "device": self._device.value,
            "tissue": bool(self._tissue.value),
            "overwrite": bool(self._overwrite.value),
        }
        weights = self._weights.value
        if weights is not None and str(weights) not in ("", "."):
            changes.update(weights=str(weights), model=None)
        elif self._model.value and self._model.value != DEFAULT_MODEL:
            changes["model"] = self._model.value
        if self._target_mpp.value > 0:
            changes["target_mpp"] = float(self._target_mpp.value)
        if self._tile.value > 0:
            changes["tile"] = int(self._tile.value)
        return PipelineConfig.load().replace(**changes)

    def region(self, layer):
        """What to run on, in level-0 pixels: a box list for the view, shapely geometry for shapes, None: all."""
        info = layer.metadata["vimscope"]
        dims = tuple(info["dimensions"])
        if self._where.value == WHOLE_SLIDE:
            return None
        if self._where.value == FIELD_OF_VIEW:
            box = field_of_view_box(self._viewer, layer, dims)
            if box is None:
                raise RegionError("the slide is not in view: pan to it or choose 'whole slide'")
            return [box]
        shapes = self._shapes.value
        if shapes is None:
            raise RegionError("choose a shapes layer with a rectangle or polygon to run on")
        geometry = shapes_region(shapes, layer, dims)
        if geometry is None:
            raise RegionError(f"shapes layer {shapes.name!r} has no shape on the slide")
        return geometry

    # -- running -----------------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, *_):
        """Start a run in a thread_worker; returns the worker (tests wait on it)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if self.running:
            return self.worker
        layer = self._image.value
        try:
            if layer is None:
                raise RegionError("open a slide first (File > Open with the vimscope reader)")
            region = self.region(layer)
            config = self.config()
        except VimscopeError as e:
            show_error(str(e))
            return None
        out = Path(self._out.value)
        self.token = CancelToken()
        self.outcome = None
        self._set_running(True, "starting...")
        self._remove_live_layer()
        slide = layer.metadata["vimscope"]["path"]
        worker = create_worker(segment_generator, slide, config, out, region, self.token, _start_thread=False)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_unexpected_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        token = self.token
        self.native.destroyed.connect(lambda *_: token.cancel())  # closing the viewer stops the run
        worker.start()
        return worker

    def cancel(self, *_):
        """Ask the run to stop; the pipeline flushes what it has and stops within one batch."""
        if self.token is not None:
            self.token.cancel()
            self._status.value = "cancelling..."
            self._cancel.enabled = False

    def _set_running(self, running: bool, message: str = ""):
        self._run.enabled = not running
        self._cancel.enabled = running
        if running:
            self._progress.value = 0
        if message:
            self._status.value = message

    def _on_event(self, item):
        event, live, box, block = item
        if event.total:
            self._progress.value = int(1000 * min(1.0, event.fraction))
        self._status.value = event.message or f"{event.stage} {event.done}/{event.total}"
        if live is None:
            return
        if self.live_layer is None:
            self.live_layer = self._add_live_layer(live, event.outputs)
        if box is not None and block is not None:
            live.update(box, block)
        now = time.monotonic()
        if now - self._last_refresh >= REFRESH_SECONDS or event.stage == "done":
            self._last_refresh = now
            self.live_layer.refresh()

    def _add_live_layer(self, live: LiveLabels, outputs: dict):
        info = self._image.value.metadata["vimscope"]
        scale = float(outputs.get("scale", 1.0)) * float(info.get("pixel_size") or 1.0)
        offset = (float(outputs.get("scale", 1.0)) - 1) / 2 * float(info.get("pixel_size") or 1.0)
        unit = info.get("unit", "pixel")
        kwargs: dict[str, Any] = {
            "name": f"{Path(info['path']).stem} classes (running)",
            "multiscale": True,
            "scale": (scale, scale),
            "translate": (offset, offset),
            "units": (unit, unit),
            "opacity": 0.5,
            "metadata": {"vimscope": {**info, "output": outputs.get("zarr") and str(outputs["zarr"])}},
        }
        classes = output_info(outputs["zarr"])["classes"] if outputs.get("zarr") else []
        colormap = class_colormap(classes)
        if colormap is not None:
            kwargs["colormap"] = colormap
        data, kwargs, _ = labels_data(live.levels, kwargs)
        return self._viewer.add_labels(data, **kwargs)

    def _remove_live_layer(self):
        if self.live_layer is not None and self.live_layer in self._viewer.layers:
            self._viewer.layers.remove(self.live_layer)
        self.live_layer = None

    def _on_returned(self, outcome: RunOutcome):
        from napari.utils.notifications import show_error, show_info

        self.outcome = outcome
        if isinstance(outcome.error, Cancelled):
            show_info("vimscope: run cancelled; what was written is kept and a rerun resumes it")
            self._status.value = "cancelled"
            return
        if outcome.error is not None:
            log.error("vimscope run failed", exc_info=outcome.error)
            e = outcome.error
            show_error(str(e) if isinstance(e, VimscopeError) else f"vimscope run failed: {type(e).__name__}: {e}")
            self._status.value = "failed"
            return
        self._progress.value = 1000
        self._show_final(outcome.last)

    def _show_final(self, last: Progress | None):
        """Swap the live preview for the finished output read back from disk (its real pyramid and colours).

        The live layer takes the class map in place: removing a napari layer runs a full garbage collection,
        which stalls the window for a second once torch is loaded.
        """
        path = last.outputs.get("zarr") if last and last.outputs else None
        if path is None or not Path(path).exists():
            self._status.value = "done"
            return
        self.result_layers = []
        for data, kwargs, layer_type in output_layers(path, include_image=False):
            live = self.live_layer
            if (
                live is not None
                and layer_type == "labels"
                and kwargs.get("metadata", {}).get("vimscope", {}).get("group") == "classes"
                and isinstance(data, list) == bool(live.multiscale)
            ):
                live.data = data
                for key in ("name", "metadata", "scale", "translate", "colormap"):
                    if key in kwargs:
                        setattr(live, key, kwargs[key])
                self.result_layers.append(live)
                self.live_layer = None
            else:
                self.result_layers.append(self._viewer._add_layer_from_data(data, kwargs, layer_type)[0])
        self._remove_live_layer()
        self._status.value = f"done: {path}"

    def _on_unexpected_error(self, e: BaseException):
        from napari.utils.notifications import show_error

        show_error(f"vimscope widget error: {type(e).__name__}: {e}")

    def _on_finished(self):
        self.worker = None
        self._set_running(False)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block (processing Qt events) until the background imports are done; True when they are."""
        from qtpy.QtWidgets import QApplication

        deadline = time.monotonic() + timeout
        while not self._ready and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        return self._ready

    def wait(self, timeout: float = 60.0) -> RunOutcome | None:
        """Block (processing Qt events) until the run ends; for tests and scripts."""
        from qtpy.QtWidgets import QApplication

        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        QApplication.processEvents()
        return self.outcome
