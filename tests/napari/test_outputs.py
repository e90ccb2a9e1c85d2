"""vimscope output folders open as image + class labels + instance labels (+ hidden probabilities, features)."""

from __future__ import annotations

import numpy as np
import pytest

from vimscope.config import ClassSpec
from vimscope.types import Box

CLASSES = [ClassSpec("background", [0, 0, 0]), ClassSpec("tumour", [200, 0, 0]), ClassSpec("stroma", [0, 160, 0])]


def _write_output(folder, *, image=True):
    from vimscope.writers.omezarr import OmeZarrWriter

    rng = np.random.default_rng(0)
    h, w = 600, 700
    classes = np.zeros((h, w), np.uint8)
    classes[100:300, 100:400] = 1
    classes[350:550, 200:650] = 2
    nuclei = np.zeros((h, w), np.uint32)
    nuclei[120:130, 120:135] = 70000
    nuclei[400:420, 300:310] = 5
    writer = OmeZarrWriter(
        folder / "slide.ome.zarr",
        out_shape=(h, w),
        scale_um=2.0,
        classes=CLASSES,
        image=image,
        probabilities=3,
        features=8,
        instances=True,
        chunk=256,
        metadata={"slide": "/data/slide.svs", "mpp": 0.5},
    )
    if image:
        writer.write_block("image", Box(0, 0, w, h), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    writer.write_block("classes", Box(0, 0, w, h), classes)
    writer.write_block("nuclei", Box(0, 0, w, h), nuclei)
    writer.write_block("probabilities", Box(0, 0, w, h), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    writer.write_block("features", Box(0, 0, w, h), rng.random((38, 44, 8)).astype(np.float16))
    writer.finalize()
    return writer.commit(), classes, nuclei


def test_output_folder_opens_as_image_classes_instances(make_napari_viewer, tmp_path):
    path, classes, nuclei = _write_output(tmp_path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="vimscope")
    by_name = {layer.name: layer for layer in layers}
    assert set(by_name) == {"slide", "slide classes", "slide nuclei", "slide probabilities", "slide features"}
    image = by_name["slide"]
    assert image._type_string == "image" and image.rgb and image.multiscale
    assert image.data[0].shape == (600, 700, 3)

    labels = by_name["slide classes"]
    assert labels._type_string == "labels" and labels.multiscale
    np.testing.assert_array_equal(np.asarray(labels.data[0]), classes)
    np.testing.assert_allclose(labels.scale, [2.0, 2.0])
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0][:3], np.array([200, 0, 0]) / 255, atol=1e-6)
    np.testing.assert_allclose(labels.colormap.map(np.array([2]))[0][:3], np.array([0, 160, 0]) / 255, atol=1e-6)
    assert labels.colormap.map(np.array([0]))[0][3] == 0, "background is transparent"
    assert labels.metadata["vimscope"]["classes"][1]["name"] == "tumour"

    inst = by_name["slide nuclei"]
    assert inst._type_string == "labels"
    assert np.asarray(inst.data[0]).max() == 70000

    probs, feats = by_name["slide probabilities"], by_name["slide features"]
    assert not probs.visible and not feats.visible, "optional layers start hidden"
    assert probs.data[0].shape == (3, 600, 700)
    assert feats.data[0].shape[0] == 8 and feats.data[0].dtype == np.float32
    np.testing.assert_allclose(feats.scale[-2:], [32.0, 32.0])


def test_output_without_image_copy_still_opens(make_napari_viewer, tmp_path):
    path, classes, _ = _write_output(tmp_path, image=False)
    viewer = make_napari_viewer()
    names = {layer.name for layer in viewer.open(str(path), plugin="vimscope")}
    assert {"slide classes", "slide nuclei"} <= names and "slide" not in names


def test_jpeg_image_copy_opens_once_vimscope_registers_its_codec(tmp_path, monkeypatch):
    """A store with the JPEG opt-in (or one an older vimscope wrote, JPEG by default) still opens in napari:
    the reader registers imagecodecs' codec itself; no entry point is needed."""
    import numcodecs.registry
    import zarr
    from vimscope_napari._outputs import output_layers

    from vimscope.writers.omezarr import OmeZarrWriter

    writer = OmeZarrWriter(tmp_path / "old.ome.zarr", out_shape=(96, 128), scale_um=1.0, classes=CLASSES, chunk=64,
                           image_codec="jpeg")  # fmt: skip
    writer.write_block("image", Box(0, 0, 128, 96), np.full((96, 128, 3), 120, np.uint8))
    writer.write_block("classes", Box(0, 0, 128, 96), np.ones((96, 128), np.uint8))
    writer.finalize()
    path = writer.commit()
    for table in (numcodecs.registry.codec_registry, numcodecs.registry.entries):  # as in a fresh process
        monkeypatch.delitem(table, "imagecodecs_jpeg", raising=False)
    with pytest.raises(Exception, match="imagecodecs_jpeg"):
        zarr.open_array(str(path / "0"), mode="r")[...]
    image = output_layers(path)[0]
    assert image[2] == "image" and np.abs(np.asarray(image[0][0]).astype(int) - 120).max() <= 2
