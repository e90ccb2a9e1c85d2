"""The reader: every shared slide and raster opens lazily as a multiscale image in physical units."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from vimscope_napari._layers import _display_name
from vimscope_napari._reader import napari_get_reader, slide_candidates

from tests.conftest import SHARED, shared_path


def _shared_files(folder: str) -> list[str]:
    root = SHARED / "data" / folder
    if not root.is_dir():
        return [f"data/{folder}/<missing>"]
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.endswith(".zarr"):
            out += [f"data/{folder}/{p.name}/{q.name}" for q in sorted(p.iterdir())]
        else:
            out.append(f"data/{folder}/{p.name}")
    return out


SHARED_FILES = _shared_files("slides") + _shared_files("aerial")


def test_manifest_is_the_distribution_and_every_command_imports():
    import importlib

    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("vimscope")
    assert manifest.name == "vimscope"
    assert {r.command for r in manifest.contributions.readers} == {"vimscope.get_reader"}
    assert manifest.contributions.readers[0].accepts_directories
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


@pytest.mark.parametrize("relative", SHARED_FILES, ids=lambda r: Path(r).name)
def test_viewer_opens_every_shared_file(make_napari_viewer, relative):
    from vimscope.io import open_slide

    path = shared_path(relative)
    meta = open_slide(path).meta
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="vimscope")
    assert layers, relative
    for layer in layers:
        assert layer._type_string == "image"
        assert layer.multiscale, "always a multiscale list, even for one-level files"
        assert isinstance(layer.data[0], da.Array), "lazy: dask arrays, no pixels read on open"
        width, height = meta.dimensions
        assert layer.data[0].shape[:2] == (height, width)
        shapes = [a.shape[:2] for a in layer.data]
        assert all(a[0] > b[0] or a[1] > b[1] for a, b in zip(shapes, shapes[1:])), shapes
        assert _display_name(meta.path) in layer.name
        info = layer.metadata["vimscope"]
        assert Path(info["path"]) == Path(meta.path)
        if meta.mpp is not None:
            np.testing.assert_allclose(layer.scale[-2:], [meta.mpp, meta.mpp])
            expected = "micrometer" if not meta.georeferenced else "meter"
            assert str(layer.units[-1]) == expected
        else:
            np.testing.assert_allclose(layer.scale[-2:], [1.0, 1.0])
    if meta.level_count > 1:
        assert len(layers[0].data) > 1, "computed or stored coarser levels are used"


def test_one_level_image_gets_computed_levels(make_napari_viewer, tmp_path):
    from PIL import Image

    rgb = (np.random.default_rng(0).random((1100, 1500, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "plain.png"), plugin="vimscope")
    assert layer.rgb and layer.multiscale
    assert layer.data[0].shape == (1100, 1500, 3)
    assert [a.shape for a in layer.data][:2] == [(1100, 1500, 3), (550, 750, 3)], "io's computed level is used"
    np.testing.assert_array_equal(np.asarray(layer.data[0][100:110, 200:220]), rgb[100:110, 200:220])


def test_synthetic_slide_pixels_and_scale(make_napari_viewer, small_slide):
    import tifffile

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(small_slide), plugin="vimscope")
    assert layer.rgb
    np.testing.assert_allclose(layer.scale, [2.0, 2.0])
    with tifffile.TiffFile(small_slide) as tif:
        expected = tif.series[0].levels[0].asarray()
    np.testing.assert_array_equal(np.asarray(layer.data[0][50:90, 60:130]), expected[50:90, 60:130])


@pytest.mark.parametrize("kind", ["missing", "text", "garbage-tif", "empty-dir", "two-paths", "plain-dir"])
def test_get_reader_returns_none_and_never_raises(tmp_path, kind):
    if kind == "missing":
        path = tmp_path / "nope.svs"
    elif kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    elif kind == "garbage-tif":
        path = tmp_path / "broken.tif"
        path.write_bytes(os.urandom(4096))
    elif kind == "empty-dir":
        path = tmp_path / "empty.zarr"
        path.mkdir()
    elif kind == "plain-dir":
        path = tmp_path / "folder"
        path.mkdir()
        (path / "a.txt").write_text("x")
    else:
        path = [str(tmp_path / "a.svs"), str(tmp_path / "b.svs")]
    assert napari_get_reader(str(path) if not isinstance(path, list) else path) is None


def test_directory_candidates_for_mrxs_and_dicom_folders(tmp_path):
    mrxs_dir = tmp_path / "CMU-1"
    mrxs_dir.mkdir()
    (mrxs_dir / "Slidedat.ini").write_text("[GENERAL]\n")
    (tmp_path / "CMU-1.mrxs").write_bytes(b"")
    assert slide_candidates(mrxs_dir) == [tmp_path / "CMU-1.mrxs"]

    dicom_dir = tmp_path / "series"
    dicom_dir.mkdir()
    (dicom_dir / "0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    (dicom_dir / "readme.txt").write_text("not dicom")
    assert slide_candidates(dicom_dir) == [dicom_dir, dicom_dir / "0001"]

    zarr_dir = tmp_path / "image.zarr"
    zarr_dir.mkdir()
    assert slide_candidates(zarr_dir) == [zarr_dir]
    assert slide_candidates(tmp_path / "notes.txt") == []
