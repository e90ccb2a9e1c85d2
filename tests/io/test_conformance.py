"""One conformance suite, ``SlideReaderTests``, run against every backend on real files and files the tests write.

A subclass names a file (``path`` fixture) and the facts ../shared/data/README.md gives for it (``fact``);
the inherited tests check what every ``SlideReader`` must do whatever the format.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import shared_path
from tests.io.conftest import demo_path
from tests.io.facts import DEMO, FACTS, check_meta
from vimscope.errors import RegionError
from vimscope.io import open_slide
from vimscope.io.pyramid import MAX_OVERVIEW_SIDE, block_mean
from vimscope.types import Box


def _centre_box(w: int, h: int, size: int) -> Box:
    bw, bh = min(size, w), min(size, h)
    return Box((w - bw) // 2, (h - bh) // 2, bw, bh)


class SlideReaderTests:
    """What every reader must do. Subclasses provide ``path`` (a fixture) and ``fact`` (expected metadata)."""

    fact: dict = {}
    backend_option: str | None = None  # force a backend instead of detecting one
    level_tolerance = 8.0  # mean |difference| (8-bit units) between a level and level 0 averaged to it

    @pytest.fixture(scope="class")
    def reader(self, path):
        reader = open_slide(path, backend=self.backend_option)
        yield reader
        reader.close()

    def test_metadata_matches_the_facts(self, reader):
        check_meta(reader.meta, self.fact)
        assert reader.meta.to_dict()["level_count"] == reader.meta.level_count

    def test_levels_shrink_and_overviews_exist(self, reader):
        meta = reader.meta
        dims, ds = meta.level_dimensions, meta.level_downsamples
        assert ds[0] == pytest.approx(1.0)
        assert all(b > a for a, b in zip(ds, ds[1:]))
        assert all(w1 <= w0 and h1 <= h0 for (w0, h0), (w1, h1) in zip(dims, dims[1:]))
        assert meta.native_levels == len(self.fact["levels"])
        if max(self.fact["levels"][-1]) > MAX_OVERVIEW_SIDE:
            assert meta.computed_levels > 0 and max(dims[-1]) <= MAX_OVERVIEW_SIDE
        else:
            assert meta.computed_levels == 0
        for level, (w, h) in enumerate(dims):
            assert w == pytest.approx(dims[0][0] / ds[level], abs=1.5 + ds[level] * 0.01)
            assert h == pytest.approx(dims[0][1] / ds[level], abs=1.5 + ds[level] * 0.01)

    def test_read_gives_native_dtype_and_bands(self, reader):
        meta = reader.meta
        for level in range(meta.level_count):
            w, h = meta.level_dimensions[level]
            box = _centre_box(w, h, 97)
            data = reader.read(box, level)
            assert data.shape == (box.h, box.w, meta.bands)
            assert data.dtype == np.dtype(meta.dtype)
        last = [meta.bands - 1]
        w, h = meta.level_dimensions[0]
        box = _centre_box(w, h, 64)
        np.testing.assert_array_equal(reader.read(box, 0, bands=last), reader.read(box, 0)[..., last])

    def test_read_rgb_is_uint8_rgb_and_crop_consistent(self, reader):
        """One stretch per image: an RGB crop equals the crop of a bigger RGB read (no per-tile contrast)."""
        meta = reader.meta
        w, h = meta.level_dimensions[0]
        big = _centre_box(w, h, 300)
        rgb = reader.read_rgb(big, 0)
        assert rgb.shape == (big.h, big.w, 3) and rgb.dtype == np.uint8
        sub = Box(big.x + big.w // 3, big.y + big.h // 3, max(1, big.w // 3), max(1, big.h // 3))
        np.testing.assert_array_equal(reader.read_rgb(sub, 0), rgb[big.h // 3 :, big.w // 3 :][: sub.h, : sub.w])
        if meta.is_rgb and meta.dtype == "uint8":
            assert meta.stretch is None
        else:
            assert meta.stretch is not None and len(meta.stretch) == len(meta.rgb_bands)
            assert all(hi > lo for lo, hi in meta.stretch)

    def test_requests_outside_the_image_raise_region_error(self, reader):
        w, h = reader.meta.dimensions
        for box in (Box(-1, 0, 10, 10), Box(0, 0, w + 1, 10), Box(w - 5, h - 5, 10, 10), Box(0, 0, 0, 5)):
            with pytest.raises(RegionError):
                reader.read(box, 0)
        with pytest.raises(RegionError):
            reader.read(Box(0, 0, 1, 1), reader.meta.level_count)
        with pytest.raises(RegionError):
            reader.read(Box(0, 0, 1, 1), 0, bands=[reader.meta.bands])

    def test_coarser_levels_show_the_same_image(self, reader):
        """Each level, averaged from level 0 over the same area, looks the same (within JPEG/resampling error)."""
        meta = reader.meta
        for level in range(1, meta.level_count):
            ds = meta.level_downsamples[level]
            f = round(ds)
            if abs(ds - f) > 0.02 * ds or f > 64:
                continue
            w, h = meta.level_dimensions[level]
            box = _centre_box(w, h, max(16, 256 // f))
            # compare 4x4-pixel averages of the level: overview makers differ (nearest, average, cubic)
            coarse = block_mean(reader.read_rgb(box, level), 4).astype(np.float32)
            fine_box = Box(box.x * f, box.y * f, box.w * f, box.h * f)
            fine = block_mean(reader.read_rgb(fine_box, 0), 4 * f).astype(np.float32)
            assert np.abs(coarse - fine).mean() < self.level_tolerance, level

    def test_dask_level_is_lazy_and_matches_read(self, reader):
        meta = reader.meta
        level = meta.level_count - 1
        arr = reader.level_as_dask(level)
        w, h = meta.level_dimensions[level]
        assert arr.shape == (h, w, meta.bands) and arr.dtype == np.dtype(meta.dtype)
        np.testing.assert_array_equal(arr.compute(scheduler="threads"), reader.read(Box(0, 0, w, h), level))
        cw, ch = reader.dask_chunks(0)
        tile = reader.level_tile_size(0)
        w0, h0 = meta.dimensions
        for chunk, native, full in ((cw, tile[0] if tile else 512, w0), (ch, tile[1] if tile else 512, h0)):
            assert chunk == full or (chunk % native == 0 and chunk >= 512 and chunk - native < 512)
        arr0 = reader.level_as_dask(0)
        assert arr0.chunksize[:2] == (ch, cw)

    def test_pickles_by_reopening(self, reader):
        meta = reader.meta
        w, h = meta.dimensions
        box = _centre_box(w, h, 50)
        clone = pickle.loads(pickle.dumps(reader))
        assert clone is not reader and clone.meta.to_dict() == meta.to_dict()
        np.testing.assert_array_equal(clone.read(box), reader.read(box))
        clone.close()

    def test_threads_each_get_a_handle_and_the_same_pixels(self, reader):
        meta = reader.meta
        level = min(1, meta.level_count - 1)
        w, h = meta.level_dimensions[level]
        n = 4
        boxes = [Box(i * (w // n), 0, max(1, w // n), max(1, min(h, 64))) for i in range(n)] * 3
        serial = [reader.read(b, level) for b in boxes]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(lambda b: reader.read(b, level), boxes))
        for a, b in zip(serial, parallel):
            np.testing.assert_array_equal(a, b)

    def test_thumbnail_and_region_helpers(self, reader):
        thumb = reader.thumbnail(200)
        assert thumb.dtype == np.uint8 and thumb.shape[2] == 3 and max(thumb.shape[:2]) <= 200
        w, h = reader.meta.dimensions
        region = reader.read_region(Box(0, 0, w, h), reader.meta.level_count - 1, out_size=(32, 24))
        assert region.shape == (24, 32, reader.meta.bands)

    def test_associated_images(self, reader):
        expected = self.fact.get("associated", {})
        assert sorted(reader.meta.associated) == sorted(expected)
        for name, (w, h) in expected.items():
            image = reader.associated_image(name)
            assert image.shape[:2] == (h, w) and image.dtype == np.uint8
        with pytest.raises(KeyError):
            reader.associated_image("no-such-image")


# --------------------------------------------------------------------------- real files of ../shared/data
def _shared(relative: str):
    @pytest.fixture(scope="class")
    def path(self):
        return shared_path(relative)

    return path


class TestAperioJpeg2000NoMpp(SlideReaderTests):
    """SVS with JPEG 2000 tiles and no MPP: OpenSlide, 'mpp unknown'."""

    fact = FACTS["data/slides/tcga-cr-7395-01a-01-ts1.svs"]
    path = _shared("data/slides/tcga-cr-7395-01a-01-ts1.svs")


class TestNdpiRestartMarkers(SlideReaderTests):
    """NDPI with restart markers: OpenSlide reports 3968x8 tiles; dask chunks are multiples of them."""

    fact = FACTS["data/slides/hamamatsu-test3-DAPI-2-387.ndpi"]
    path = _shared("data/slides/hamamatsu-test3-DAPI-2-387.ndpi")


class TestNdpiTritc(SlideReaderTests):
    fact = FACTS["data/slides/hamamatsu-test3-TRITC-2-560.ndpi"]
    path = _shared("data/slides/hamamatsu-test3-TRITC-2-560.ndpi")


class TestQptiff(SlideReaderTests):
    """A QPTIFF OpenSlide cannot open: tifffile, channels named from the PerkinElmer XML."""

    fact = FACTS["data/slides/small_vectra.qptiff"]
    path = _shared("data/slides/small_vectra.qptiff")

    def test_openslide_cannot_open_it(self, path):
        import openslide

        assert openslide.OpenSlide.detect_format(str(path)) is None


class TestPlainTiff(SlideReaderTests):
    """Plain one-page TIFF without a pyramid: coarser levels are computed."""

    fact = FACTS["data/slides/kidney-48-5.tif"]
    path = _shared("data/slides/kidney-48-5.tif")


class TestOmeTiffInt8(SlideReaderTests):
    fact = FACTS["data/slides/multi-channel.ome.tif"]
    path = _shared("data/slides/multi-channel.ome.tif")


class TestOmeZarr04Synthetic(SlideReaderTests):
    fact = FACTS["data/slides/ome-zarr-synthetic/blobs_image_v04.ome.zarr"]
    path = _shared("data/slides/ome-zarr-synthetic/blobs_image_v04.ome.zarr")


class TestOmeZarr05Synthetic(SlideReaderTests):
    fact = FACTS["data/slides/ome-zarr-synthetic/blobs_image_v05.ome.zarr"]
    path = _shared("data/slides/ome-zarr-synthetic/blobs_image_v05.ome.zarr")


class TestGeoTiffNodata(SlideReaderTests):
    fact = FACTS["data/aerial/RGB.byte.tif"]
    path = _shared("data/aerial/RGB.byte.tif")

    def test_transform(self, reader):
        x0, dx, rx, y0, ry, dy = reader.meta.transform
        assert (x0, y0) == (101985.0, 2826915.0)
        assert dx == pytest.approx(300.0379, abs=1e-3) and dy == pytest.approx(-300.0418, abs=1e-3)
        assert rx == ry == 0


class TestCogWithMaskPages(SlideReaderTests):
    """A COG whose mask pages OpenSlide lists as extra levels: tifffile must win and see 7 levels, not 13."""

    fact = FACTS["data/aerial/cogeo.tif"]
    path = _shared("data/aerial/cogeo.tif")
    level_tolerance = 12.0  # JPEG overviews of a textured photo, resampled by GDAL's choice

    def test_openslide_would_see_mask_levels(self, path):
        import openslide

        assert openslide.OpenSlide(str(path)).level_count == 13


class TestCogUint16(SlideReaderTests):
    """1-band uint16 COG with PixelIsPoint: the origin moves half a pixel, as GDAL does."""

    fact = FACTS["data/aerial/cog.tif"]
    path = _shared("data/aerial/cog.tif")
    level_tolerance = 20.0  # overviews were made with NEAREST resampling (GDAL metadata), not averaging

    def test_pixel_is_point_transform(self, reader):
        x0, dx, _, y0, _, dy = reader.meta.transform
        assert x0 == pytest.approx(373185.0, abs=1e-6) and y0 == pytest.approx(8286015.0, abs=1e-6)
        assert dx == pytest.approx(100.0113, abs=1e-4) and dy == pytest.approx(-100.0113, abs=1e-4)


class TestRgbaAlphaAsNodata(SlideReaderTests):
    fact = FACTS["data/aerial/pix4d_alpha_nodata.tif"]
    path = _shared("data/aerial/pix4d_alpha_nodata.tif")

    def test_alpha_defines_valid_data(self, reader):
        w, h = reader.meta.dimensions
        valid = reader.valid_mask(Box(0, 0, w, h))
        alpha = reader.read(Box(0, 0, w, h), bands=[3])[..., 0]
        np.testing.assert_array_equal(valid, alpha > 0)
        assert 0.5 < valid.mean() < 1.0
        assert reader.read_rgb(Box(0, 0, 10, 10)).shape == (10, 10, 3)


class TestHighResAerial(SlideReaderTests):
    fact = FACTS["data/aerial/201404_13SED190110_201404_0x1500m_CL_1.tif"]
    path = _shared("data/aerial/201404_13SED190110_201404_0x1500m_CL_1.tif")


class TestSentinel2TenBands(SlideReaderTests):
    """10-band uint16: RGB shows B04/B03/B02 with one stretch per image."""

    fact = FACTS["data/labelled/landcover-sentinel2/strzegom_20230301_33u.tif"]
    path = _shared("data/labelled/landcover-sentinel2/strzegom_20230301_33u.tif")


class TestDemoSlide(SlideReaderTests):
    fact = DEMO

    @pytest.fixture(scope="class")
    def path(self):
        return demo_path()


class TestDemoSlideThroughTifffile(SlideReaderTests):
    """The same SVS read by tifffile (forced): JPEG tiles checked by check_jpeg, same metadata from the description."""

    fact = {**DEMO, "backend": "tifffile"}
    backend_option = "tifffile"

    @pytest.fixture(scope="class")
    def path(self):
        return demo_path()

    def test_pixels_agree_with_openslide(self, reader, path):
        other = open_slide(path)
        box = Box(500, 700, 300, 200)
        diff = np.abs(reader.read(box).astype(int) - other.read(box).astype(int))
        assert diff.mean() < 2.0  # two JPEG decoders (different IDCT/upsampling) on the same data


class TestPngRgba(SlideReaderTests):
    fact = {
        "backend": "image",
        "vendor": "png",
        "size": (643, 488),
        "levels": [(643, 488)],
        "bands": 4,
        "dtype": "uint8",
    }
    path = _shared("data/labelled/nuclei-miccai2015/image01.png")


# --------------------------------------------------------------------------- files the tests write
class TestWrittenOmeTiffPyramid(SlideReaderTests):
    fact = {
        "backend": "tifffile",
        "vendor": "ome-tiff",
        "size": (900, 700),
        "levels": [(900, 700), (450, 350), (225, 175)],
        "mpp": 0.5,
        "bands": 3,
        "dtype": "uint8",
        "tile": (64, 64),
    }

    @pytest.fixture(scope="class")
    def path(self, ome_tiff):
        return ome_tiff


class TestWrittenGenericPyramid(SlideReaderTests):
    fact = {
        "backend": "tifffile",
        "vendor": "tiff",
        "size": (6000, 6000),
        "levels": [(6000, 6000), (3000, 3000), (1500, 1500)],
        "mpp": 0.25,
        "bands": 3,
        "dtype": "uint8",
        "tile": (1024, 1024),
    }
    level_tolerance = 30.0  # tissue tiles of coarse levels are drawn, not averaged, by the generator

    @pytest.fixture(scope="class")
    def path(self, generic_pyramid):
        return generic_pyramid


class _WrittenZarr(SlideReaderTests):
    fact = {
        "backend": "zarr",
        "vendor": "ome-zarr",
        "size": (400, 300),
        "levels": [(400, 300), (200, 150), (100, 75)],
        "mpp": 0.5,
        "bands": 3,
        "band_names": ["ch0", "ch1", "ch2"],
        "dtype": "uint16",
        "tile": (64, 64),
    }
    level_tolerance = 20.0

    def test_omero_window_is_the_stretch(self, reader):
        assert reader.meta.stretch == [(0.0, 200.0)] * 3


class TestWrittenOmeZarr04(_WrittenZarr):
    @pytest.fixture(scope="class")
    def path(self, ome_zarr_04):
        return ome_zarr_04


class TestWrittenOmeZarr05(_WrittenZarr):
    @pytest.fixture(scope="class")
    def path(self, ome_zarr_05):
        return ome_zarr_05


class TestWrittenJpeg(SlideReaderTests):
    fact = {
        "backend": "image",
        "vendor": "jpeg",
        "size": (1500, 1200),
        "levels": [(1500, 1200)],
        "bands": 3,
        "dtype": "uint8",
    }

    @pytest.fixture(scope="class")
    def path(self, jpeg_file):
        return jpeg_file


def test_every_real_file_has_a_conformance_class():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    used = {id(c.fact) for c in subclasses(SlideReaderTests)}
    assert [k for k, v in FACTS.items() if id(v) not in used] == []
