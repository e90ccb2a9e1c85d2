"""Hostile inputs, generated here: corrupt tiles in each compression, decompression bombs in each container.

Corrupt tiles: ``read`` raises DamagedTileError naming the tile; inside ``collect_damage`` the damaged tile (and
only it) is filled, every other pixel is exact. Bombs: refused from the header (DecodeLimitError, exit code 23,
one line) before anything is allocated: the CLI runs under a 2 GB address-space cap, so an allocation of the
claimed size would end in MemoryError (exit 70) instead.
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.io import hostile
from tests.io.conftest import smooth_image
from vimscope.errors import DamagedTileError, DecodeLimitError, SlideNotFoundError
from vimscope.io import open_slide
from vimscope.io.limits import ENV_VAR
from vimscope.types import Box

ROOT = Path(__file__).resolve().parents[2]
TILE = 64
DAMAGED = 5  # tile index in a 4 x 4 grid: column 1, row 1
CAP_GB = 2
MAX_RSS_MB = 600  # a Python process with numpy, tifffile, zarr and Pillow: ~60-150 MB; torch adds ~250 MB


# ------------------------------------------------------------------------------------------------ helpers
def run_cli(*args, env: dict | None = None, cap_gb: float | None = CAP_GB, timeout: int = 60):
    """(exit code, stderr lines, peak RSS in MB) of ``vimscope ARGS`` in a child with RLIMIT_AS = ``cap_gb``."""
    # VmHWM: the peak RSS of this process image (ru_maxrss would carry the forking parent's peak over the exec)
    code = (
        "import sys\n"
        "from vimscope.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
        "sys.stderr.write('MAXRSS %s\\n' % hwm[0])\n"
        "sys.exit(rc)\n"
    )

    def cap():
        if cap_gb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (int(cap_gb * 2**30),) * 2)

    full_env = {**__import__("os").environ, **(env or {})}
    p = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        env=full_env,
        cwd=ROOT,
    )
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    rss = [int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("MAXRSS")]
    return p.returncode, [ln for ln in lines if not ln.startswith("MAXRSS")], (rss[0] if rss else None)


def assert_refused(rc, lines, rss, *, claimed: str):
    assert rc == DecodeLimitError.exit_code, lines
    errors = [ln for ln in lines if ln.startswith("vimscope: error:")]
    assert len(errors) == 1 and ("would decode to" in errors[0] or "Pillow refuses" in errors[0]), lines
    assert claimed in errors[0], errors[0]
    assert rss is not None and rss < MAX_RSS_MB, f"peak RSS {rss} MB"
    print(f"\nrefused ({claimed}): exit {rc}, peak RSS {rss:.0f} MB")


def _tiled(path: Path, compression: str, image: np.ndarray, **kw) -> Path:
    tifffile.imwrite(path, image, tile=(TILE, TILE), compression=compression, photometric="rgb", **kw)
    return path


# ------------------------------------------------------------------------------------------------ corrupt tiles
COMPRESSIONS = {
    "jpeg": "JPEG",
    "zlib": "DEFLATE",
    "lzw": "LZW",
    "zstd": "ZSTD",
    "webp": "WEBP",
    "lzma": "LZMA",
    "packbits": "PACKBITS",
    "png": "PNG",
}


# Codecs without a checksum decode a damaged payload into wrong pixels without complaint (zstd frames as tifffile
# writes them, WebP; JPEG 2000 and Blosc too): for them the test damages the stream's header, which they check.
CORRUPT_AT = {"zstd": 0.0, "webp": 0.0}


def _available(name: str) -> bool:
    return bool(getattr(imagecodecs, COMPRESSIONS[name], None)) and getattr(imagecodecs, COMPRESSIONS[name]).available


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
def test_a_corrupt_tile_costs_its_own_pixels_in_each_compression(tmp_path, compression):
    if not _available(compression):
        pytest.skip(f"imagecodecs without {compression}")
    image = smooth_image(4 * TILE, 4 * TILE, seed=3)
    clean = _tiled(tmp_path / "clean.tif", compression, image)
    bad = _tiled(tmp_path / "bad.tif", compression, image)
    hostile.corrupt_segment(bad, DAMAGED, at=CORRUPT_AT.get(compression, 0.25))
    whole = Box(0, 0, 4 * TILE, 4 * TILE)
    expected = open_slide(clean).read(whole)  # lossy codecs: compare with the clean file as decoded
    tile_box = Box(TILE, TILE, TILE, TILE)

    reader = open_slide(bad)
    with pytest.raises(DamagedTileError) as caught:
        reader.read(whole)
    assert "\n" not in str(caught.value)
    with reader.collect_damage(fill=7) as damage:
        got = reader.read(whole)
    assert [(a.level, a.box, a.box0) for a in damage.areas] == [(0, tile_box, tile_box)]
    assert damage.areas[0].reason and "\n" not in damage.areas[0].reason
    inside = np.zeros(got.shape[:2], bool)
    inside[TILE : 2 * TILE, TILE : 2 * TILE] = True
    assert (got[inside] == 7).all()
    np.testing.assert_array_equal(got[~inside], expected[~inside])
    # reads that do not touch the damaged tile are untouched by it, inside a collector or not
    np.testing.assert_array_equal(reader.read(Box(0, 0, 4 * TILE, TILE)), expected[:TILE])


def test_a_corrupt_strip_costs_that_strip(tmp_path):
    image = smooth_image(200, 150, seed=4)
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, image, compression="zlib", rowsperstrip=32, photometric="rgb")
    hostile.corrupt_segment(path, 2)
    reader = open_slide(path)
    with reader.collect_damage(fill=0) as damage:
        got = reader.read(Box(0, 0, 150, 200))
    assert [a.box for a in damage.areas] == [Box(0, 64, 150, 32)]
    np.testing.assert_array_equal(got[:64], image[:64])
    np.testing.assert_array_equal(got[96:], image[96:])
    assert not got[64:96].any()


def _zarr(path: Path, image: np.ndarray, compressor) -> Path:
    import zarr

    root = zarr.open_group(path, mode="w", zarr_format=2)
    arr = root.create_array("0", shape=image.shape, chunks=(3, TILE, TILE), dtype=image.dtype, compressors=compressor)
    arr[...] = image
    axes = [{"name": n, "type": "channel" if n == "c" else "space"} for n in "cyx"]
    ds = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]
    root.attrs.update({"multiscales": [{"version": "0.4", "axes": axes, "datasets": ds}]})
    return path


@pytest.mark.parametrize("codec", ["zlib", "zstd-truncated"])
def test_a_corrupt_zarr_chunk_costs_that_chunk(tmp_path, codec):
    from numcodecs import Zlib, Zstd

    image = smooth_image(3 * TILE, 3 * TILE, seed=5).transpose(2, 0, 1).copy()
    path = _zarr(tmp_path / "c.zarr", image, Zlib(level=1) if codec == "zlib" else Zstd())
    chunk = path / "0" / "0.1.1"
    data = bytearray(chunk.read_bytes())
    if codec == "zlib":
        data[len(data) // 4 : len(data) // 4 + 200] = np.random.default_rng(0).integers(0, 256, 200, np.uint8).tobytes()
    else:
        data = data[: len(data) // 2]
    chunk.write_bytes(bytes(data))
    reader = open_slide(path)
    with pytest.raises(DamagedTileError):
        reader.read(Box(0, 0, 3 * TILE, 3 * TILE))
    with reader.collect_damage(fill=9) as damage:
        got = reader.read(Box(0, 0, 3 * TILE, 3 * TILE))
    assert [a.box for a in damage.areas] == [Box(TILE, TILE, TILE, TILE)]
    expected = image.transpose(1, 2, 0).copy()
    expected[TILE : 2 * TILE, TILE : 2 * TILE] = 9
    np.testing.assert_array_equal(got, expected)


def test_damage_under_a_computed_level_is_confined_and_reported(tmp_path):
    """A file without a pyramid: the overview is computed from level 0 around the damaged tile, a read over its
    footprint raises (outside a collector) and the tissue mask lists it and keeps it in (so its tiles run)."""
    from vimscope.tissue import mask as tissue_mask

    image = smooth_image(1280, 2304, seed=6)
    clean = _tiled(tmp_path / "clean.tif", "zlib", image, resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    bad = _tiled(tmp_path / "bad.tif", "zlib", image, resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    index = 5 * 36 + 20  # row 5, column 20 of 36 x 20 tiles: level-0 box (1280, 320, 64, 64)
    hostile.corrupt_segment(bad, index)
    src = Box(1280, 320, 64, 64)
    reader, reference = open_slide(bad), open_slide(clean)
    assert reader.meta.native_levels == 1 and reader.meta.level_count == 3
    level = 2  # factor 4: the damaged tile covers (320, 80, 16, 16)
    w, h = reader.meta.level_dimensions[level]
    with pytest.raises(DamagedTileError):
        reader.read(Box(300, 60, 40, 40), level)
    np.testing.assert_array_equal(reader.read(Box(0, 0, 300, h), level), reference.read(Box(0, 0, 300, h), level))
    with reader.collect_damage(fill=0) as damage:
        got = reader.read(Box(0, 0, w, h), level)
    assert [(a.level, a.box, a.box0) for a in damage.areas] == [(0, src, src)]
    want = reference.read(Box(0, 0, w, h), level).copy()
    want[80:96, 320:336] = 0
    np.testing.assert_array_equal(got, want)
    m = tissue_mask(reader, mpp=2.0)  # 4 level-0 px per mask px
    assert [a.box0 for a in m.damaged] == [src]
    assert m.mask[80:96, 320:336].all()
    thumb = reader.thumbnail(256)  # an overview never fails for damage
    assert thumb.shape[2] == 3


# ------------------------------------------------------------------------------------------------ bombs
@pytest.mark.parametrize("tiled", [False, True], ids=["strip", "tile"])
def test_tiff_bomb_is_refused_from_its_tags(tmp_path, tiled):
    """14 MB on disk, one deflate segment of 70,000 x 70,000 RGB (13.7 GB decoded)."""
    path = hostile.bomb_tiff(tmp_path / "bomb.tif", 70_000, 70_000, tiled=tiled)
    assert path.stat().st_size < 16 << 20
    rc, lines, rss = run_cli("info", path, "--mpp", "0.5", "--target-mpp", "2")
    assert_refused(rc, lines, rss, claimed="70000 x 70000 x 3")


def test_the_limit_is_configurable_and_reads_below_it(tmp_path, monkeypatch):
    """A real 2048 x 2048 strip (12 MB decoded): refused under 8 MB (option or environment), read under the default."""
    path = hostile.bomb_tiff(tmp_path / "strip.tif", 2048, 2048)
    with pytest.raises(DecodeLimitError, match="12 MB"):
        open_slide(path, max_decoded_mb=8)
    monkeypatch.setenv(ENV_VAR, "8")
    with pytest.raises(DecodeLimitError, match=ENV_VAR):
        open_slide(path)
    monkeypatch.delenv(ENV_VAR)
    reader = open_slide(path)
    assert not reader.read(Box(2000, 2000, 48, 48)).any()
    with pytest.raises(Exception, match="positive"):
        open_slide(path, max_decoded_mb=-1)


def test_zarr_chunk_bomb_is_refused(tmp_path):
    path = hostile.bomb_zarr(tmp_path / "bomb.ome.zarr", 40_000, 40_000)
    rc, lines, rss = run_cli("info", path, "--mpp", "0.5", "--target-mpp", "2")
    assert_refused(rc, lines, rss, claimed="3 x 40000 x 40000")


def test_png_bomb_under_pillows_limit_is_refused_by_ours(tmp_path):
    """8000 x 8000 RGB (183 MB decoded) passes Pillow's pixel limit; ours, lowered to 64 MB, refuses it."""
    path = hostile.bomb_png(tmp_path / "bomb.png", 8000, 8000)
    rc, lines, rss = run_cli("info", path, "--mpp", "0.5", "--target-mpp", "2", env={ENV_VAR: "64"})
    assert_refused(rc, lines, rss, claimed="8000 x 8000 x 3")


def test_png_bomb_is_refused_from_its_header(tmp_path):
    path = hostile.bomb_png(tmp_path / "bomb.png", 70_000, 70_000)
    rc, lines, rss = run_cli("info", path)
    assert_refused(rc, lines, rss, claimed="70000 x 70000")


def test_pillows_own_limit_still_guards_an_image_under_ours(tmp_path):
    """20,000^2 (400 Mpx) under a raised limit of ours: Pillow's MAX_IMAGE_PIXELS guard refuses it, same code."""
    path = hostile.bomb_png(tmp_path / "big.png", 20_000, 20_000)
    with pytest.raises(DecodeLimitError, match="Pillow refuses"):
        open_slide(path, max_decoded_mb=4000)


def test_png_text_chunk_bomb_is_refused(tmp_path):
    path = hostile.ztxt_bomb_png(tmp_path / "text.png")
    with pytest.raises(DecodeLimitError, match="decompression bomb") as caught:
        open_slide(path)
    assert "\n" not in str(caught.value)


def test_jpeg_bomb_is_refused(tmp_path):
    """A 16 x 16 JPEG whose frame header is patched to claim 60,000 x 60,000."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") * 2
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    rc, lines, rss = run_cli("info", path)
    assert_refused(rc, lines, rss, claimed="60000 x 60000")


def test_segment_refuses_a_tiff_bomb_before_the_model_runs(tmp_path):
    path = hostile.bomb_tiff(tmp_path / "bomb.tif", 70_000, 70_000)
    out = tmp_path / "out"
    args = ("segment", path, "-o", out, "--mpp", "0.5", "--model", "vim_test", "--device", "cpu", "-q")
    rc, lines, rss = run_cli(*args, cap_gb=None, timeout=120)
    assert_refused(rc, lines, rss, claimed="70000 x 70000 x 3")
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.endswith(".partial")]


# ------------------------------------------------------------------------------------------------ paths
def test_symlink_loop_and_dangling_link_are_named(tmp_path):
    a, b, own = tmp_path / "a.svs", tmp_path / "b.svs", tmp_path / "self.svs"
    a.symlink_to(b)
    b.symlink_to(a)
    own.symlink_to(own)
    for path in (a, own, own / "inside.svs"):
        with pytest.raises(SlideNotFoundError, match="symbolic link loop") as caught:
            open_slide(path)
        assert caught.value.exit_code == 3
    dangling = tmp_path / "c.svs"
    dangling.symlink_to(tmp_path / "gone.svs")
    with pytest.raises(SlideNotFoundError, match="broken symbolic link"):
        open_slide(dangling)
    with pytest.raises(SlideNotFoundError, match="no such file or folder"):
        open_slide(tmp_path / "missing.svs")


# ------------------------------------------------------------------------------------------------ tile streams
@pytest.mark.parametrize("codec", ["jpeg8", "png", "webp", "jpeg2k"])
def test_the_size_a_tile_stream_claims_is_read_from_its_header(codec):
    from vimscope.io.jpeg import frames

    if not getattr(getattr(imagecodecs, codec.upper().replace("8", ""), None), "available", False):
        pytest.skip(f"imagecodecs without {codec}")
    encode = getattr(imagecodecs, f"{codec}_encode")
    compression = {"jpeg8": frames.JPEG, "png": frames.PNG, "webp": frames.WEBP, "jpeg2k": frames.JPEG2000[-1]}
    stream = bytes(encode(smooth_image(40, 72, seed=7)))
    assert frames.claimed_size(stream[: frames.HEAD_BYTES], compression[codec]) == (72, 40)
    assert frames.oversized(stream, compression[codec], (72, 40)) is None
    assert "72 x 40" in frames.oversized(stream, compression[codec], (64, 64))


def test_a_tile_whose_png_stream_claims_70000_squared_is_damaged_not_decoded(tmp_path):
    """A 64 x 64 PNG-coded TIFF tile whose own header says 70,000 x 70,000: the decoder would allocate 13.7 GB.
    The tile is reported damaged before decoding; ``info`` (tissue mask) runs on in bounded memory."""
    import struct
    import zlib

    path = _tiled(tmp_path / "png.tif", "png", smooth_image(128, 128, seed=8))
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].dataoffsets[3])
    data = bytearray(path.read_bytes())
    ihdr = offset + 12  # after the PNG signature and the IHDR length
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 70_000, 70_000)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedTileError, match="claims 70000 x 70000"):
        open_slide(path).read(Box(64, 64, 64, 64))
    rc, lines, rss = run_cli("info", path, "--mpp", "0.5", "--target-mpp", "0.5")
    assert rc == 0 and rss < MAX_RSS_MB, (lines, rss)


def test_damaged_areas_are_listed_once_and_described_in_one_phrase():
    from vimscope.io.damage import DamagedArea, describe_areas, unique_areas

    a = DamagedArea(0, Box(1200, 720, 240, 240), Box(1200, 720, 240, 240), "bad Huffman code")
    b = DamagedArea(0, Box(0, 0, 240, 240), Box(0, 0, 240, 240), "premature end")
    listed = unique_areas([a, b.to_dict(), a.to_dict(), a])
    assert [d["box"] for d in listed] == [[1200, 720, 240, 240], [0, 0, 240, 240]]
    assert describe_areas(listed[:1]) == "1 damaged tile of the slide (level-0 x,y,w,h: 1200,720,240,240)"
    assert describe_areas(listed, limit=1).endswith("1200,720,240,240 and 1 more)")
    assert describe_areas([]) == ""


def test_damage_met_by_the_display_stretch_is_not_the_callers(tmp_path):
    """16-bit data needs one stretch, computed from the whole overview on the first RGB read: a damaged tile
    elsewhere must not be listed against a box that does not touch it."""
    image = (smooth_image(4 * TILE, 4 * TILE, seed=9)[..., :1].astype(np.uint16) * 200).copy()
    path = tmp_path / "grey16.tif"
    tifffile.imwrite(path, image, tile=(TILE, TILE), compression="zlib", photometric="minisblack")
    hostile.corrupt_segment(path, DAMAGED)
    reader = open_slide(path)
    assert reader.meta.stretch is None and not reader.meta.is_rgb
    with reader.collect_damage() as damage:
        rgb = reader.read_rgb(Box(3 * TILE, 3 * TILE, TILE, TILE))
    assert rgb.shape == (TILE, TILE, 3) and reader.meta.stretch is not None
    assert not damage.areas
    with reader.collect_damage() as damage:
        reader.read_rgb(Box(0, 0, 2 * TILE, 2 * TILE))
    assert [a.box for a in damage.areas] == [Box(TILE, TILE, TILE, TILE)]
