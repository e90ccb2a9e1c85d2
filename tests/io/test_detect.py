"""Backends are chosen by content (magic bytes, TIFF tags, zarr metadata), never by the file name."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_path
from tests.io.conftest import demo_path
from vimscope.errors import CorruptSlideError, UnsupportedFormatError
from vimscope.io import open_slide
from vimscope.io.detect import detect


def test_misnamed_files_open_with_the_right_backend(tmp_path):
    tiff_as_png = tmp_path / "really-a-tiff.png"
    shutil.copy(shared_path("data/aerial/cog.tif"), tiff_as_png)
    assert open_slide(tiff_as_png).meta.backend == "tifffile"
    png_as_svs = tmp_path / "really-a-png.svs"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(png_as_svs, format="PNG")
    assert open_slide(png_as_svs).meta.backend == "image"
    svs_as_tif = tmp_path / "really-an-svs.tif"
    shutil.copy(demo_path(), svs_as_tif)
    assert open_slide(svs_as_tif).meta.vendor == "aperio"


def test_vendor_tiffs_go_to_openslide_generic_ones_to_tifffile():
    assert detect(shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs")).backend == "openslide"
    assert detect(shared_path("data/slides/hamamatsu-test3-DAPI-2-387.ndpi")).backend == "openslide"
    assert detect(shared_path("data/aerial/cogeo.tif")).backend == "tifffile"  # OpenSlide says generic-tiff
    assert detect(shared_path("data/slides/small_vectra.qptiff")).vendor == "qptiff"
    assert detect(shared_path("data/slides/multi-channel.ome.tif")).vendor == "ome-tiff"


def test_ndpi_through_tifffile_sees_its_four_pages():
    reader = open_slide(shared_path("data/slides/hamamatsu-test3-DAPI-2-387.ndpi"), backend="tifffile")
    assert reader.meta.native_levels == 4 and reader.meta.dimensions == (3968, 4864)


def test_ome_zarr_folders_and_bioformats2raw_layout(tmp_path):
    src = shared_path("data/slides/ome-zarr-synthetic/blobs_image_v04.ome.zarr")
    assert detect(src).backend == "zarr"
    layout = tmp_path / "converted.zarr"
    layout.mkdir()
    (layout / ".zgroup").write_text('{"zarr_format": 2}')
    (layout / ".zattrs").write_text('{"bioformats2raw.layout": 3}')
    shutil.copytree(src, layout / "0")
    found = detect(layout)
    assert found.backend == "zarr" and found.source == layout / "0"
    assert open_slide(layout).meta.dimensions == (12, 12)


def test_dicom_file_or_folder_goes_to_openslide(tmp_path):
    series = tmp_path / "dicom-series"
    series.mkdir()
    for name in ("b.dcm", "a.dcm"):
        (series / name).write_bytes(bytes(128) + b"DICM" + bytes(64))
    (series / "notes.txt").write_text("scan notes")
    found = detect(series)
    assert found.backend == "openslide" and found.source == series / "a.dcm" and found.vendor == "dicom"
    assert detect(series / "b.dcm").backend == "openslide"
    with pytest.raises((CorruptSlideError, UnsupportedFormatError)):  # not a real WSI: OpenSlide says so
        open_slide(series)
