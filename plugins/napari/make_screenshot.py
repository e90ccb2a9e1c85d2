"""Make the README's napari screenshot: the demo slide, the widget docked, a whole-slide run shown on top.

Run under a display (``xvfb-run -a python -m vimscope_napari.make_screenshot docs/napari.png``) after
``bash .ci/setup`` fetched the demo slide. The default model is ``vim_test_pointwise`` (untrained, fixed random
weights, so the picture is reproducible): it shows the plugin working, not a trained segmentation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--slide", type=Path, default=None, help="slide to show (default: the demo slide)")
    parser.add_argument("--model", default="vim_test_pointwise")
    parser.add_argument("--target-mpp", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=Path("vimscope-screenshot-output"))
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # no toast over the picture
    from vimscope_napari._widget import WHOLE_SLIDE, SegmentWidget

    import napari
    from vimscope.demo import demo_slide_path

    slide = args.slide or demo_slide_path()
    if slide is None:
        print("no demo slide: run `bash .ci/setup` or pass --slide", file=sys.stderr)
        return 2
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    (layer,) = viewer.open(str(slide), plugin="vimscope")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment with vimscope")
    widget._model.value = args.model
    widget._target_mpp.value = args.target_mpp
    widget._device.value = "cpu"
    widget._out.value = args.work
    widget._where.value = WHOLE_SLIDE
    widget.reset_choices()
    widget._image.value = layer
    widget.wait_ready(120)
    widget.start()
    outcome = widget.wait(600)
    if outcome is None or outcome.error is not None:
        print(f"run failed: {outcome.error if outcome else 'timeout'}", file=sys.stderr)
        return 1
    for result in widget.result_layers:
        result.opacity = 0.85
    viewer.reset_view()
    viewer.layers.selection = {layer}
    viewer.status = "Ready"
    _close_toasts(viewer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image

    # a 256-colour palette keeps the PNG small enough for the repository (~4x smaller, visually the same)
    Image.fromarray(shot[..., :3]).quantize(256).save(args.out, optimize=True)
    viewer.close()
    print(args.out)
    return 0


def _close_toasts(viewer) -> None:
    """Close notification pop-ups (e.g. napari's PyQt5 deprecation notice) so they do not cover the canvas."""
    try:
        from qtpy.QtWidgets import QApplication

        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        QApplication.processEvents()
    except Exception:  # private API: only cosmetic
        pass


if __name__ == "__main__":
    sys.exit(main())
