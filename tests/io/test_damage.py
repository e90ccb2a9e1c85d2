"""Damaged data is flagged (DamagedTileError), never passed on silently, by every backend.

The main test corrupts bytes inside 30 JPEG tiles of a copy of the demo SVS and reads every tile through both
backends that can read it. Undetectable damage exists (a flipped bit can leave a valid Huffman code), so the
tests assert: no clean tile is flagged or changed, and most corrupted tiles are flagged.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from tests.conftest import shared_path
from tests.io import synthetic
from tests.io.conftest import demo_path, smooth_image
from vimscope.errors import CorruptSlideError, DamagedTileError
from vimscope.io import open_slide
from vimscope.io.jpeg.check import check_jpeg
from vimscope.types import Box

N_CORRUPT = 30


def _tile_grid(path):
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return page.tilewidth, page.tilelength, page.imagewidth, page.imagelength, page.dataoffsets, page.databytecounts


def _corrupt_tiles(src, dst, n=N_CORRUPT, seed=0, per_tile=7):
    """Copy ``src`` to ``dst`` and overwrite ``per_tile`` bytes inside the data of ``n`` random tiles."""
    shutil.copy(src, dst)
    *_, offsets, counts = _tile_grid(src)
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(len(offsets), n, replace=False))
    data = bytearray(dst.read_bytes())
    for i in chosen:
        o, c = int(offsets[i]), int(counts[i])
        for q in o + rng.integers(c // 4, c - 10, size=per_tile):
            data[q] = (data[q] + int(rng.integers(1, 256))) % 256
    dst.write_bytes(bytes(data))
    return set(chosen)


def _read_all_tiles(reader, tw, th, w, h):
    flagged, tiles = set(), {}
    index = 0
    for y in range(0, h, th):
        for x in range(0, w, tw):
            box = Box(x, y, min(tw, w - x), min(th, h - y))
            try:
                tiles[index] = reader.read(box)
            except DamagedTileError as e:
                assert e.box == box and e.level == 0
                flagged.add(index)
            index += 1
    return flagged, tiles


@pytest.fixture(scope="module")
def corrupted_svs(tmp_path_factory):
    src = demo_path()
    dst = tmp_path_factory.mktemp("damage") / "corrupt.svs"
    return src, dst, _corrupt_tiles(src, dst)


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_each_backend_flags_corrupted_svs_tiles(corrupted_svs, backend):
    src, dst, corrupted = corrupted_svs
    tw, th, w, h, *_ = _tile_grid(src)
    flagged, tiles = _read_all_tiles(open_slide(dst, backend=backend), tw, th, w, h)
    original = open_slide(src, backend=backend)
    assert flagged <= corrupted, "a clean tile was flagged"
    assert len(flagged) >= 0.75 * len(corrupted), f"{backend} flagged only {len(flagged)} of {len(corrupted)}"
    index = 0
    for y in range(0, h, th):
        for x in range(0, w, tw):
            if index not in corrupted:  # reading went on after errors (OpenSlide: a fresh handle) and is exact
                box = Box(x, y, min(tw, w - x), min(th, h - y))
                np.testing.assert_array_equal(tiles[index], original.read(box))
            index += 1
    print(f"\n{backend}: flagged {len(flagged)} of {len(corrupted)} corrupted tiles")


def test_jpegcheck_catches_what_openslides_decoder_catches(corrupted_svs):
    """jpegcheck re-derives libjpeg's warnings (plus a DC range check), so it flags every tile that OpenSlide's
    own decoder rejects, and more: OpenSlide alone lets damaged tiles through as pixels."""
    src, dst, corrupted = corrupted_svs
    tw, th, w, h, *_ = _tile_grid(src)
    decoder_only = open_slide(dst, backend="openslide")
    decoder_only._checker = None  # OpenSlide's decoder alone
    by_decoder, _ = _read_all_tiles(decoder_only, tw, th, w, h)
    by_jpegcheck, _ = _read_all_tiles(open_slide(dst, backend="tifffile"), tw, th, w, h)
    assert by_decoder <= by_jpegcheck <= corrupted
    assert len(by_jpegcheck) > len(by_decoder)
    print(f"\nOpenSlide's decoder alone flagged {len(by_decoder)}, jpegcheck {len(by_jpegcheck)} of {len(corrupted)}")


def test_damage_in_a_multi_tile_read_names_the_tiles(corrupted_svs):
    src, dst, corrupted = corrupted_svs
    tw, th, w, h, *_ = _tile_grid(src)
    reader = open_slide(dst, backend="tifffile")
    nx = -(-w // tw)
    bad = min(corrupted)
    box = Box((bad % nx) * tw, (bad // nx) * th, min(tw, w - (bad % nx) * tw), 1)
    with pytest.raises(DamagedTileError) as info:
        reader.read(Box(0, box.y, w, min(th, h - box.y)))
    assert Box((bad % nx) * tw, box.y, min(tw, w - (bad % nx) * tw), min(th, h - box.y)) in info.value.tiles
    with pytest.raises(DamagedTileError):  # remembered: the same tile fails again without a new check
        reader.read(box)


def test_openslide_reader_reopens_after_an_error(tmp_path):
    """NDPI (no raw-tile check: OpenSlide alone decodes): after OpenSlide's read error the reader goes on."""
    src = shared_path("data/slides/hamamatsu-test3-DAPI-2-387.ndpi")
    dst = tmp_path / "corrupt.ndpi"
    shutil.copy(src, dst)
    with tifffile.TiffFile(src) as tif:
        offset, count = int(tif.pages[0].dataoffsets[0]), int(tif.pages[0].databytecounts[0])
    data = bytearray(dst.read_bytes())
    rng = np.random.default_rng(3)
    for q in offset + rng.integers(count // 3, 2 * count // 3, size=200):
        data[q] = (data[q] + 77) % 256
    dst.write_bytes(bytes(data))
    reader, original = open_slide(dst), open_slide(src)
    assert reader._checker is None
    w, h = reader.meta.dimensions
    boxes = [Box(x, y, 512, min(512, h - y)) for y in range(0, h, 512) for x in (0, 1024)]  # damage spans rows
    failed, good = [], []
    for box in boxes:
        try:
            pixels = reader.read(box)
        except DamagedTileError:
            failed.append(box)
            continue
        good.append((box, pixels))
    assert failed, "no region of the corrupted NDPI was flagged"
    assert len(good) > len(boxes) // 2
    first_failure = boxes.index(failed[0])
    later = [(b, px) for b, px in good if boxes.index(b) > first_failure]
    assert later, "nothing was read after the first error"
    for box, pixels in later[:5]:  # regions read after an error are exact: the dead handle was replaced
        np.testing.assert_array_equal(pixels, original.read(box))


def test_deflate_cog_damage_is_flagged(tmp_path):
    src = shared_path("data/aerial/cog.tif")
    dst = tmp_path / "cog.tif"
    corrupted = _corrupt_tiles(src, dst, n=6, per_tile=40)
    tw, th, w, h, *_ = _tile_grid(src)
    flagged, _ = _read_all_tiles(open_slide(dst), tw, th, w, h)
    assert flagged and flagged <= corrupted


def test_bytes_past_the_end_of_the_file(tmp_path):
    """A file cut short after it was opened: tiles whose bytes are gone are flagged, the rest still read."""
    src = synthetic.ome_pyramid(tmp_path / "a.ome.tif", smooth_image(512, 512), levels=1, tile=64)
    reader = open_slide(src)
    full = reader.read(Box(0, 0, 64, 64))
    with tifffile.TiffFile(src) as tif:
        last_end = max(int(o) + int(c) for o, c in zip(tif.pages[0].dataoffsets, tif.pages[0].databytecounts))
    data = src.read_bytes()
    src.write_bytes(data[: last_end - 10])
    with pytest.raises(DamagedTileError, match="past the end"):
        reader.read(Box(448, 448, 64, 64))
    np.testing.assert_array_equal(reader.read(Box(0, 0, 64, 64)), full)
    with pytest.raises(CorruptSlideError, match="truncated"):
        open_slide(src)


def test_zarr_chunk_damage_is_flagged(tmp_path):
    """Zstd (Zarr v3 default) reports corrupt chunks; a cut-short Blosc chunk (v2 default) too.

    Blosc-LZ4 has no checksum: bytes changed in place can decode to garbage unnoticed, a codec limit.
    """
    image = smooth_image(256, 256).transpose(2, 0, 1).astype(np.uint16)
    v5 = synthetic.ome_zarr(tmp_path / "v5.ome.zarr", image, version="0.5", levels=1)
    chunks = sorted(p for p in (v5 / "0" / "c").rglob("*") if p.is_file())
    rng = np.random.default_rng(1)
    damaged = chunks[::5]
    for chunk in damaged:
        data = bytearray(chunk.read_bytes())
        for q in rng.integers(len(data) // 4, len(data) - 4, 30):
            data[q] ^= 0x5A
        chunk.write_bytes(bytes(data))
    reader = open_slide(v5)
    flagged = 0
    for y in range(0, 256, 64):
        for x in range(0, 256, 64):
            try:
                reader.read(Box(x, y, 64, 64))
            except DamagedTileError:
                flagged += 1
    assert 1 <= flagged <= 16 and flagged >= len({c.parent.parent.name + c.name for c in damaged}) // 2

    v4 = synthetic.ome_zarr(tmp_path / "v4.ome.zarr", image, version="0.4", levels=1)
    chunk = v4 / "0" / "0.1.1"
    chunk.write_bytes(chunk.read_bytes()[:-50])
    reader = open_slide(v4)
    with pytest.raises(DamagedTileError):
        reader.read(Box(64, 64, 64, 64))
    assert reader.read(Box(0, 0, 64, 64)).shape == (64, 64, 3)


def test_damaged_jpeg_and_png_images(tmp_path):
    from PIL import Image

    jpg = tmp_path / "a.jpg"
    Image.fromarray(smooth_image(400, 400)).save(jpg, quality=90)
    data = bytearray(jpg.read_bytes())
    assert check_jpeg(bytes(data)) is None
    for q in range(len(data) // 2, len(data) // 2 + 40, 4):
        data[q] ^= 0x33
    jpg.write_bytes(bytes(data))
    with pytest.raises(DamagedTileError):
        open_slide(jpg).read(Box(0, 0, 10, 10))

    png = tmp_path / "a.png"
    Image.fromarray(smooth_image(300, 300)).save(png)
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.read_bytes()[:-200])
    with pytest.raises(CorruptSlideError, match="truncated"):
        open_slide(cut)
    data = bytearray(png.read_bytes())
    for q in range(len(data) // 2, len(data) // 2 + 100):
        data[q] ^= 0xFF
    png.write_bytes(bytes(data))
    with pytest.raises(DamagedTileError):
        open_slide(png).read(Box(0, 0, 10, 10))


# --------------------------------------------------------------------------- one damaged tile of the demo SVS
DEMO_TILE = 35  # level 0, column 5, row 3 of 10 x 13 tiles of 240 px: level-0 box (1200, 720, 240, 240)
DEMO_BOX = Box(1200, 720, 240, 240)


@pytest.fixture(scope="module")
def one_bad_tile(tmp_path_factory):
    """The demo SVS with 500 random bytes written into one level-0 JPEG tile (a quarter into its data)."""
    from tests.io.hostile import corrupt_segment

    src = demo_path()
    dst = tmp_path_factory.mktemp("onebad") / "bad.svs"
    shutil.copy(src, dst)
    corrupt_segment(dst, DEMO_TILE, seed=1)
    return src, dst


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_one_damaged_tile_costs_its_pixels_in_the_computed_overview(one_bad_tile, backend):
    """The demo SVS has one level; level 2 (4x) is computed from it. Before: the whole 2220 x 1888 strip around the
    tile read as zeros and no damage was reported. Now: only the tile's 60 x 60 footprint, and it is named."""
    from vimscope.tissue import mask as tissue_mask

    src, dst = one_bad_tile
    reader, clean = open_slide(dst, backend=backend), open_slide(src, backend=backend)
    assert reader.meta.native_levels == 1 and reader.meta.level_downsamples[2] == pytest.approx(4, rel=1e-3)
    w, h = reader.meta.level_dimensions[2]
    whole = Box(0, 0, w, h)
    with reader.collect_damage(fill=255) as damage:
        got = reader.read(whole, 2)
    assert [(a.level, a.box0) for a in damage.areas] == [(0, DEMO_BOX)]
    want = clean.read(whole, 2).copy()
    want[180:240, 300:360] = 255
    np.testing.assert_array_equal(got, want)
    with pytest.raises(DamagedTileError):
        reader.read(Box(290, 170, 20, 20), 2)
    np.testing.assert_array_equal(reader.read(Box(0, 0, w, 170), 2), clean.read(Box(0, 0, w, 170), 2))
    m, m_clean = tissue_mask(reader), tissue_mask(clean)
    assert [a.box0 for a in m.damaged] == [DEMO_BOX] and not m_clean.damaged
    outside = np.ones(m.mask.shape, bool)
    ds = m.downsample
    outside[int(720 // ds) - 8 : int(960 // ds) + 9, int(1200 // ds) - 8 : int(1440 // ds) + 9] = False
    assert (m.mask[outside] == m_clean.mask[outside]).mean() > 0.99  # the rest of the mask is the clean one's


def test_the_tile_loader_reads_around_a_damaged_tile(one_bad_tile):
    """Tile windows over the damaged tile: exact pixels except the damaged tile's, which are filled and named."""
    from vimscope.tiling.loader import TileLoader
    from vimscope.tiling.plan import plan_tiles

    src, dst = one_bad_tile
    reader, clean = open_slide(dst), open_slide(src)
    plan = plan_tiles(reader.meta, target_mpp=reader.meta.mpp * 2, tile=256, halo=0)
    near = Box(720, 240, 1200, 1200)  # level-0 px: the damaged tile and its neighbours (keeps the test fast)
    tiles = [t for t, tile in enumerate(plan.tiles) if tile.read_box.scale(1 / plan.scale).intersect(near)]
    got = {}
    for loader in (TileLoader(reader, plan, [tiles], workers=1, damaged_value=7), TileLoader(clean, plan, [tiles])):
        for batch in loader:
            got[loader.reader.path] = batch
    bad, good = got[str(dst)], got[str(src)]
    assert bad.damaged and set(bad.damaged) == set(bad.damaged_areas) == set(bad.damaged_boxes)
    for t in bad.damaged:
        assert [a.box0 for a in bad.damaged_areas[t]] == [DEMO_BOX]
        assert "\n" not in bad.damaged[t] and "1200, 720, 240, 240" in bad.damaged[t]
    touched = {t for t, window in zip(bad.tiles, bad.windows) if window.scale(1 / plan.scale).intersect(DEMO_BOX)}
    assert set(bad.damaged) == touched
    for i, t in enumerate(bad.tiles):
        a, b = bad.pixels[i].numpy(), good.pixels[i].numpy()
        hit = np.zeros(a.shape[:2], bool)
        for box in bad.damaged_boxes.get(t, []):
            hit[box.y : box.y1, box.x : box.x1] = True
        assert (a[hit] == 7).all()
        np.testing.assert_array_equal(a[~hit], b[~hit])
