"""A slide with a vimscope result on top, rendered by napari and saved as a PNG that is checked to show both."""

from __future__ import annotations

import numpy as np
from PIL import Image


def test_screenshot_of_slide_with_overlay(make_napari_viewer, tmp_path, small_slide, colour_model):
    from vimscope.pipeline import PipelineConfig, run

    config = PipelineConfig.load(target_mpp=4.0, device="cpu", outputs=["classes"])
    result = run(small_slide, config, out=tmp_path / "out", model=colour_model)
    viewer = make_napari_viewer(show=True)
    (slide,) = viewer.open(str(small_slide), plugin="vimscope")
    layers = viewer.open(str(result.paths["zarr"]), plugin="vimscope")
    (classes,) = [layer for layer in layers if layer.name.endswith("classes")]
    assert np.asarray(classes.data[0] if classes.multiscale else classes.data).max() > 0, "something to overlay"

    # the class map lies exactly on the slide: its pixels' outer edges are the slide's (an output pixel covers 2 x 2
    # level-0 pixels; napari's extent runs between pixel centres, so add half a pixel on each side)
    def edges(layer):
        return layer.extent.world + np.array([-0.5, 0.5])[:, None] * layer.scale

    np.testing.assert_allclose(edges(classes), edges(slide), atol=1e-6)
    viewer.reset_view()

    path = tmp_path / "napari_screenshot.png"
    shot = viewer.screenshot(path=str(path), canvas_only=True, flash=False)
    classes.visible = False
    plain = viewer.screenshot(canvas_only=True, flash=False)

    saved = np.asarray(Image.open(path))
    assert saved.shape[:2] == shot.shape[:2] and saved.shape[0] > 100 and saved.shape[1] > 100
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 20, "not blank: the slide is drawn"
    # the tissue's pink is on screen, and the overlay changes a sizeable part of it
    pink = (rgb[..., 0] > 180) & (rgb[..., 1] < 190) & (rgb[..., 2] > 140)
    assert (pink | (np.abs(plain[..., :3].astype(float) - rgb).sum(-1) > 30)).mean() > 0.05
    changed = np.abs(plain[..., :3].astype(float) - rgb).sum(-1) > 30
    assert changed.mean() > 0.05, f"the overlay covers only {changed.mean():.1%} of the canvas"
