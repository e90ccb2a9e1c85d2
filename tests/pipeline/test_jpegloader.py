"""The GPU decode path (a JPEG level's own tiles, decoded once, windows assembled on the device): the same batches as
the reader path, damaged tiles flagged the same way, and the pipeline's outputs unchanged. In CI the tiles are
decoded on CPU threads (``CpuDecoder``); the ``gpu`` tests run nvjpeg."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.io.conftest import smooth_image
from tests.io.jpegtiff import write_jpeg_tiff
from tests.pipeline.helpers import read_store
from tests.pipeline.test_loader import _plan, make_reader
from vimscope.io import open_slide
from vimscope.io.jpeg.tiles import JpegLevel, jpeg_level
from vimscope.tiling.jpegloader import (
    CpuDecoder,
    JpegTileLoader,
    WindowMap,
    assemble_row,
    assemble_window,
    psnr,
    window_map,
)
from vimscope.tiling.loader import TileGeometry, TileLoader, batches_in_order, read_window
from vimscope.types import Box


def _split(img: np.ndarray, tile: tuple[int, int]) -> tuple[JpegLevel, dict[int, torch.Tensor]]:
    """An image cut into full-size (C, th, tw) tiles, as a decoder returns them, with a level describing them."""
    h, w = img.shape[:2]
    tw, th = tile
    level = JpegLevel("mem", 0, (w, h), tile, np.zeros(0), np.zeros(0), None, False)
    nx, ny = level.grid
    padded = np.zeros((ny * th, nx * tw, 3), np.uint8)
    padded[:h, :w] = img
    tiles = {
        ty * nx + tx: torch.from_numpy(padded[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw].copy()).permute(2, 0, 1)
        for ty in range(ny)
        for tx in range(nx)
    }
    return level, tiles


@pytest.mark.parametrize("pad", ["reflect", "constant"])
@pytest.mark.parametrize("short", [0, 1])
def test_windows_assembled_from_tiles_are_read_window(pad, short):
    """Crop, edge-extension (a level a pixel short of the output grid) and padding, exactly as the CPU path."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (83, 101, 3), dtype=np.uint8)
    level, tiles = _split(img[: 83 - short, : 101 - short], (32, 24))
    reader = make_reader(img[: 83 - short, : 101 - short])
    geom = TileGeometry(0, 1.0, (101 - short, 83 - short), (83, 101), 40)
    windows = [Box(x, y, 40, 40) for y in (-20, -5, 0, 17, 50, 60, 81) for x in (-39, -8, 0, 33, 61, 70, 99)]
    for win in windows:
        want = read_window(reader, geom, win, pad=pad, value=9)
        out = torch.full((40, 40, 3), 1, dtype=torch.uint8)
        assemble_window(out, window_map(win, (83, 101), (101 - short, 83 - short), pad), level, tiles, value=9)
        assert np.array_equal(out.numpy(), want), win


def test_a_row_of_windows_gathered_at_once_equals_window_by_window():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)
    level, tiles = _split(img, (32, 24))
    xs = [3, 40, 41, 150, 212]  # overlapping, apart, up to the right edge (212 + 48 = 260)
    srcs = [Box(x, 70, 48, 48) for x in xs]
    want = torch.zeros((7, 48, 48, 3), dtype=torch.uint8)
    for i, b in zip((0, 2, 3, 5, 6), srcs):
        assemble_window(want[i], WindowMap(b, b), level, tiles)
    got = torch.zeros_like(want)
    assemble_row(got, (0, 2, 3, 5, 6), srcs, level, tiles)
    assert torch.equal(got, want) and not got[[1, 4]].any()  # the other slots untouched
    assert torch.equal(got[6], torch.from_numpy(img[70:118, 212:260]))


@pytest.fixture(scope="module")
def jpeg_slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegloader")
    img = smooth_image(230, 300, seed=8)
    return {
        "rgb": write_jpeg_tiff(folder / "rgb.tif", img, tile=64, photometric="rgb"),
        "ycbcr": write_jpeg_tiff(folder / "ycbcr.tif", img, tile=64, photometric="ycbcr", tables=False),
    }


def _both(path, pad: str, tile=48, halo=6, batch=3):
    reader = open_slide(path)
    h, w = reader.meta.level_dimensions[0][::-1]
    plan = _plan((h, w), tile, halo)
    batches = batches_in_order(range(len(plan.tiles)), batch)
    level, why = jpeg_level(reader, 0)
    assert level is not None, why
    common = dict(workers=2, prefetch=2, pad=pad, pad_value=7, damaged_value=250)
    cpu = list(TileLoader(reader, plan, batches, pin_memory=False, **common))
    loader = JpegTileLoader(level, plan, batches, decoder=CpuDecoder(), **common)
    tiles = list(loader)
    return cpu, tiles, loader, level


@pytest.mark.parametrize("kind, pad", [("rgb", "reflect"), ("ycbcr", "constant")])
def test_batches_equal_the_reader_path_and_each_tile_decodes_once(jpeg_slides, kind, pad):
    cpu, tiles, loader, level = _both(jpeg_slides[kind], pad)
    assert len(cpu) == len(tiles)
    for a, b in zip(cpu, tiles):
        assert a.tiles == b.tiles and a.windows == b.windows and not b.damaged
        assert torch.equal(a.pixels, b.pixels)
    assert loader.decoded_tiles == len(level.offsets)  # each TIFF tile decoded once, not once per window
    assert loader.peak_cached < len(level.offsets)  # and dropped after the last window that needs it
    assert loader.decode == "cpu-tiles"


def test_damaged_tiles_flag_the_same_windows(jpeg_slides, tmp_path):
    import tifffile

    path = tmp_path / "damaged.tif"
    shutil.copy(jpeg_slides["rgb"], path)
    with tifffile.TiffFile(path) as tif:
        offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for i in (3, 9):
        for q in int(offsets[i]) + rng.integers(int(counts[i]) // 4, int(counts[i]) - 4, size=12):
            data[q] = (data[q] + int(rng.integers(1, 256))) % 256
    path.write_bytes(bytes(data))
    cpu, tiles, *_ = _both(path, "reflect")
    flagged = {t for b in cpu for t in b.damaged}
    assert flagged and flagged == {t for b in tiles for t in b.damaged}
    partly = 0
    for a, b in zip(cpu, tiles):  # a damaged tile costs its own pixels only, the same ones on both paths
        assert torch.equal(a.pixels, b.pixels)
        for i, t in enumerate(b.tiles):
            if t in b.damaged:
                assert "damaged tile" in b.damaged[t] and "damaged tile" in a.damaged[t]
                assert {x.box for x in a.damaged_areas[t]} == {x.box for x in b.damaged_areas[t]}
                assert b.damaged_boxes[t]
                for box in b.damaged_boxes[t]:
                    assert (b.pixels[i][box.y : box.y1, box.x : box.x1] == 250).all()
                partly += int(not (b.pixels[i] == 250).all())
    assert partly, "no window kept the pixels of its intact tiles"


def test_the_loader_stops_cleanly_when_abandoned(jpeg_slides):
    reader = open_slide(jpeg_slides["ycbcr"])
    plan = _plan((230, 300), 48, 6)
    level, _ = jpeg_level(reader, 0)
    loader = JpegTileLoader(level, plan, batches_in_order(range(len(plan.tiles)), 2), prefetch=1)
    stream = iter(loader)
    next(stream)
    stream.close()  # the decode thread and the readers end; nothing hangs


def _run(slide, out, **config):
    from vimscope.pipeline import run

    base = {"model": "vim_test", "outputs": ["image", "classes", "probabilities", "summary"], "tissue": False}
    return run(slide, {**base, **config}, out=out)


def test_pipeline_outputs_do_not_depend_on_the_decode_path(jpeg_slides, tmp_path):
    """decode=gpu without a GPU reads the level's own tiles on CPU threads: the same stores, bit for bit."""
    a = _run(jpeg_slides["rgb"], tmp_path / "cpu", decode="cpu", device="cpu")
    b = _run(jpeg_slides["rgb"], tmp_path / "gpu", decode="gpu", device="cpu")
    assert (a.summary["decode"], b.summary["decode"]) == ("reader", "cpu-tiles")
    sa, sb = read_store(a.paths["zarr"]), read_store(b.paths["zarr"])
    assert sa.keys() == sb.keys()
    for key in sa:
        assert np.array_equal(sa[key], sb[key]), key


@pytest.mark.parametrize(
    "decode, device, level_scale, path",
    [
        ("auto", "cpu", 1.0, "reader"),  # auto takes the tile path only when the model runs on CUDA
        ("gpu", "cpu", 1.0, "cpu-tiles"),  # no nvjpeg on the CPU: the level's tiles on CPU threads
        ("gpu", "cpu", 2.0, "reader"),  # resampled reads stay with the reader
        ("cpu", "cpu", 1.0, "reader"),
    ],
)
def test_the_decode_setting_picks_the_loader(jpeg_slides, decode, device, level_scale, path):
    from vimscope.pipeline.loop import make_loader

    reader = open_slide(jpeg_slides["rgb"])
    plan = _plan((230, 300), 48, 6)
    plan.level_scale = level_scale
    run_plan = SimpleNamespace(
        config=SimpleNamespace(decode=decode, workers=1, prefetch=1, pad_value=255),
        lm=SimpleNamespace(device=torch.device(device), spec=SimpleNamespace(in_chans=3)),
        reader=reader,
        tiling=plan,
        pad="reflect",
        stem="rgb",
    )
    loader = make_loader(run_plan, [[0]])
    assert loader.decode == path and isinstance(loader, TileLoader if path == "reader" else JpegTileLoader)


def _fake_torchvision(monkeypatch, decode):
    """A stand-in ``torchvision.io`` whose ``decode_jpeg`` runs ``decode`` on the host (no GPU in CI)."""
    import enum
    import sys
    import types

    io_module = types.ModuleType("torchvision.io")
    io_module.ImageReadMode = enum.Enum("ImageReadMode", "UNCHANGED RGB")
    io_module.decode_jpeg = decode
    top = types.ModuleType("torchvision")
    top.io = io_module
    monkeypatch.setitem(sys.modules, "torchvision", top)
    monkeypatch.setitem(sys.modules, "torchvision.io", io_module)


@pytest.mark.parametrize("fault", ["none", "one-unreadable", "wrong-colours"])
def test_nvjpeg_decoder_falls_back_to_libjpeg(jpeg_slides, monkeypatch, fault):
    """Batches go to decode_jpeg; an unreadable stream fails its batch and is decoded alone (libjpeg where nvjpeg
    can't); colours off by more than 40 dB PSNR on the first tile hand the whole run to the CPU decoder."""
    from vimscope.tiling.jpegloader import NvjpegDecoder, decode_cpu

    calls = []

    def decode_jpeg(tensors, mode=None, device="cpu"):
        calls.append(len(tensors))
        out = []
        for t in tensors:
            if fault == "one-unreadable" and len(tensors) == 1 and len(calls) == 3:
                raise RuntimeError("nvjpeg: unsupported stream")
            if fault == "one-unreadable" and len(tensors) > 1:
                raise RuntimeError("nvjpeg: batch failed")
            a = torch.from_numpy(decode_cpu(t.numpy().tobytes())).permute(2, 0, 1)
            out.append(255 - a if fault == "wrong-colours" else a)
        return out

    _fake_torchvision(monkeypatch, decode_jpeg)
    reader = open_slide(jpeg_slides["rgb"])
    plan = _plan((230, 300), 48, 6)
    batches = batches_in_order(range(len(plan.tiles)), 3)
    level, _ = jpeg_level(reader, 0)
    decoder = NvjpegDecoder("cpu")
    loader = JpegTileLoader(level, plan, batches, decoder=decoder, workers=2)
    for a, b in zip(TileLoader(reader, plan, batches, pin_memory=False, workers=2), loader):
        assert torch.equal(a.pixels, b.pixels) and not b.damaged
    assert loader.decode == ("cpu-tiles" if fault == "wrong-colours" else "nvjpeg")
    if fault == "wrong-colours":
        assert decoder.fallback and "PSNR" in decoder.fallback and len(calls) == 1
    if fault == "one-unreadable":
        assert decoder.tiles["cpu"] == 1 and calls[0] > 1


# GPU -----------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_nvjpeg_decodes_ycbcr_tiles_like_libjpeg_and_hands_rgb_tiles_to_the_cpu(jpeg_slides):
    """nvjpeg ignores the Adobe APP14 marker that says RGB-photometric tiles (Aperio's) are not YCbCr: its colours
    are then wrong (PSNR ~11 dB on the demo slide), the first-batch check notices and the CPU decodes instead."""
    from tests.io.conftest import demo_path
    from vimscope.tiling.jpegloader import NvjpegDecoder, decode_cpu, nvjpeg_unavailable

    assert nvjpeg_unavailable("cuda") is None
    for path, on_gpu in ((jpeg_slides["ycbcr"], True), (jpeg_slides["rgb"], False), (demo_path(), False)):
        level, _ = jpeg_level(open_slide(path), 0)
        fd = level.open()
        streams = [level.fetch(fd, i)[0] for i in range(len(level.offsets))]
        decoder = NvjpegDecoder("cuda")
        got = decoder.decode([decoder.prepare(s) for s in streams])
        assert (decoder.fallback is None) == on_gpu, path
        assert decoder.tiles["cpu"] == (0 if on_gpu else len(streams))
        pairs = [(g.permute(1, 2, 0).cpu().numpy(), decode_cpu(s)) for s, g in zip(streams, got)]
        assert psnr(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])) >= 40, path  # the slide
        assert min(psnr(a, b) for a, b in pairs) >= 35, path  # and every tile (chroma upsampling differs a little)


@pytest.mark.gpu
@pytest.mark.parametrize("kind, decode", [("ycbcr", "nvjpeg"), ("rgb", "cpu-tiles")])
def test_gpu_batches_match_the_reader_path(jpeg_slides, kind, decode):
    from vimscope.tiling.jpegloader import NvjpegDecoder

    reader = open_slide(jpeg_slides[kind])
    plan = _plan((230, 300), 48, 6)
    batches = batches_in_order(range(len(plan.tiles)), 4)
    level, _ = jpeg_level(reader, 0)
    loader = JpegTileLoader(level, plan, batches, device="cuda", decoder=NvjpegDecoder("cuda"))
    for a, b in zip(TileLoader(reader, plan, batches, pin_memory=False), loader):
        assert b.pixels.is_cuda and a.tiles == b.tiles
        torch.cuda.current_stream().synchronize()
        assert psnr(b.pixels.cpu().numpy(), a.pixels.numpy()) >= 40
    assert loader.decode == decode


@pytest.mark.gpu
def test_pipeline_on_the_gpu_decodes_with_nvjpeg_and_agrees_with_the_reader_path(jpeg_slides, tmp_path):
    a = _run(jpeg_slides["ycbcr"], tmp_path / "cpu", decode="cpu", device="cuda", precision="float32")
    b = _run(jpeg_slides["ycbcr"], tmp_path / "gpu", decode="gpu", device="cuda", precision="float32")
    assert (a.summary["decode"], b.summary["decode"]) == ("reader", "nvjpeg")
    sa, sb = read_store(a.paths["zarr"]), read_store(b.paths["zarr"])
    assert psnr(sa["image"], sb["image"]) >= 40
    assert np.mean(sa["classes"] == sb["classes"]) >= 0.99
    assert np.abs(sa["probabilities"].astype(int) - sb["probabilities"].astype(int)).mean() <= 1.0
