"""Raw JPEG tiles made standalone (JPEGTables spliced, APP14 for RGB): any decoder gives the reader's pixels, and
damaged tiles are flagged as the CPU path flags them."""

from __future__ import annotations

import io
import shutil

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import shared_path
from tests.io.conftest import smooth_image
from tests.io.jpegtiff import write_jpeg_tiff
from vimscope.errors import DamagedTileError
from vimscope.io import open_slide
from vimscope.io.jpeg.tilecheck import PAST_END
from vimscope.io.jpeg.tiles import APP14_RGB, jpeg_level, standalone_jpeg
from vimscope.types import Box

KINDS = {"rgb-tables": ("rgb", True), "ycbcr-tables": ("ycbcr", True), "ycbcr-self-contained": ("ycbcr", False)}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module", params=list(KINDS))
def generated(request, tmp_path_factory):
    photometric, tables = KINDS[request.param]
    path = tmp_path_factory.mktemp("jpegtiles") / f"{request.param}.tif"
    return write_jpeg_tiff(path, smooth_image(150, 200, seed=4), tile=64, photometric=photometric, tables=tables)


def _every_tile(level, reference: np.ndarray, openslide_pixels: np.ndarray | None = None) -> None:
    """Each tile's standalone stream, decoded by imagecodecs and Pillow, is the reader's pixels of that tile."""
    fd = level.open()
    try:
        for index in range(len(level.offsets)):
            data, problem = level.fetch(fd, index)
            assert problem is None and data[:2] == b"\xff\xd8"
            part = level.tile_box(index).intersect(Box(0, 0, *level.size))
            want = reference[part.y : part.y1, part.x : part.x1]
            got = imagecodecs.jpeg8_decode(data)[: part.h, : part.w]
            assert np.array_equal(got, want), f"tile {index}: imagecodecs differs from tifffile"
            pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[: part.h, : part.w]
            assert psnr(pillow, want) >= 40, f"tile {index}: Pillow differs"
            if openslide_pixels is not None:
                other = openslide_pixels[part.y : part.y1, part.x : part.x1]
                assert psnr(got, other) >= 40, f"tile {index}: differs from OpenSlide"
    finally:
        import os

        os.close(fd)


def _openslide_rgb(path) -> np.ndarray:
    import openslide

    with openslide.OpenSlide(str(path)) as s:
        return np.asarray(s.read_region((0, 0), 0, s.dimensions))[..., :3]


def test_generated_tiles_decode_alone_to_the_readers_pixels(generated):
    reader = open_slide(generated)
    level, why = jpeg_level(reader, 0)
    assert level is not None, why
    reference = tifffile.imread(generated)
    assert np.array_equal(reader.read_rgb(Box(0, 0, 200, 150)), reference)
    _every_tile(level, reference, _openslide_rgb(generated))
    if level.rgb:  # the APP14 marker is what makes the colours right: without it decoders assume YCbCr
        fd = level.open()
        wrong = imagecodecs.jpeg8_decode(standalone_jpeg(level.raw(fd, 0), level.tables, rgb=False))
        assert psnr(wrong[:64, :64], reference[:64, :64]) < 20


def test_demo_svs_tiles_decode_alone_to_openslides_pixels(demo):
    """The real Aperio SVS: RGB-photometric tiles (component ids 0-2, no JFIF), shared tables, both readers."""
    for backend in ("openslide", "tifffile"):
        reader = open_slide(demo, backend=backend)
        level, why = jpeg_level(reader, 0)
        assert level is not None and level.rgb and level.tables, why
        w, h = level.size
        reference = reader.read_rgb(Box(0, 0, w, h))
        _every_tile(level, reference, _openslide_rgb(demo) if backend == "openslide" else None)


@pytest.mark.parametrize(
    "name, why",
    [
        ("data/slides/tcga-cr-7395-01a-01-ts1.svs", "not JPEG"),  # JPEG 2000 tiles
        ("data/slides/hamamatsu-test3-DAPI-2-387.ndpi", "no TIFF JPEG tiles"),
        ("data/slides/kidney-48-5.tif", "not tiled"),
    ],
)
def test_other_levels_say_why_not(name, why):
    reader = open_slide(shared_path(name))
    level, reason = jpeg_level(reader, 0)
    assert level is None and why in reason
    level, reason = jpeg_level(reader, reader.meta.level_count - 1)
    assert level is None and reason


def test_standalone_stream_layout():
    tables = b"\xff\xd8" + b"\xff\xdb\x00\x04\x00\x01" + b"\xff\xd9"
    jfif = b"\xff\xe0\x00\x07JFIF\x00"
    tile = b"\xff\xd8" + jfif + b"\xff\xc0\x00\x03\x08" + b"\xff\xd9"
    # tables go after the leading APPn segments; a JFIF tile names its colour space: no APP14
    assert standalone_jpeg(tile, tables, rgb=True) == b"\xff\xd8" + jfif + tables[2:-2] + tile[2 + len(jfif) :]
    bare = b"\xff\xd8\xff\xc0\x00\x03\x08\xff\xd9"
    assert standalone_jpeg(bare, None, rgb=True) == b"\xff\xd8" + APP14_RGB + bare[2:]
    assert standalone_jpeg(bare, None, rgb=False) == bare
    assert standalone_jpeg(b"GIF89a", tables, rgb=True) == b"GIF89a"


def _corrupt(src, dst, tiles, seed=0):
    shutil.copy(src, dst)
    with tifffile.TiffFile(src) as tif:
        offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    rng = np.random.default_rng(seed)
    data = bytearray(dst.read_bytes())
    for i in tiles:
        o, c = int(offsets[i]), int(counts[i])
        for q in o + rng.integers(c // 4, c - 4, size=12):
            data[q] = (data[q] + int(rng.integers(1, 256))) % 256
    dst.write_bytes(bytes(data))
    return offsets, counts


def test_damaged_tiles_are_flagged_like_the_cpu_path(tmp_path):
    src = write_jpeg_tiff(tmp_path / "clean.tif", smooth_image(256, 320, seed=6), tile=64, photometric="rgb")
    dst = tmp_path / "damaged.tif"
    _corrupt(src, dst, tiles=[1, 7, 12, 18])
    reader = open_slide(dst)
    level, _ = jpeg_level(reader, 0)
    fd = level.open()
    flagged_raw, flagged_reader = set(), set()
    for index in range(len(level.offsets)):
        data, problem = level.fetch(fd, index)
        if problem:
            flagged_raw.add(index)
            assert data is None
        try:
            reader.read(level.tile_box(index).intersect(Box(0, 0, *level.size)))
        except DamagedTileError:
            flagged_reader.add(index)
    assert flagged_raw == flagged_reader and flagged_raw <= {1, 7, 12, 18} and len(flagged_raw) >= 3
    # a file cut short: the last tile's data runs past its end
    cut = tmp_path / "cut.tif"
    cut.write_bytes(src.read_bytes()[: int(level.offsets[-1]) + 10])
    import os

    fd2 = os.open(cut, os.O_RDONLY)
    assert level.fetch(fd2, len(level.offsets) - 1) == (None, PAST_END)
