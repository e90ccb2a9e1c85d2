"""jpegcheck: clean JPEG streams pass, each kind of damage libjpeg warns about is reported."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image

import vimscope.io.jpeg.check as jc
from tests.conftest import shared_path
from tests.io.conftest import smooth_image


def _jpeg(image: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return smooth_image(96, 136, seed=5)


@pytest.fixture(scope="module")
def ndpi_stream() -> bytes:
    """One level of a real NDPI: a single JPEG whose 3968x8 'tiles' are restart intervals."""
    path = shared_path("data/slides/hamamatsu-test3-DAPI-2-387.ndpi")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[3]
        offset, count = page.tags["StripOffsets"].value[0], page.tags["StripByteCounts"].value[0]
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(count)


@pytest.mark.parametrize("quality", [20, 75, 100])
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_clean_streams_pass(photo, quality, subsampling):
    assert jc.check_jpeg(_jpeg(photo, quality=quality, subsampling=subsampling)) is None


def test_clean_grey_restart_and_real_streams_pass(photo, ndpi_stream):
    assert jc.check_jpeg(_jpeg(photo[..., 0])) is None
    assert b"\xff\xdd" in _jpeg(photo, restart_marker_blocks=3)
    assert jc.check_jpeg(_jpeg(photo, restart_marker_blocks=3)) is None
    assert jc.check_jpeg(ndpi_stream) is None


def test_progressive_is_not_walked(photo):
    data = bytearray(_jpeg(photo, progressive=True))
    data[len(data) // 2] ^= 0xFF
    assert jc.check_jpeg(bytes(data)) is None  # unchecked, by design (WSI tiles are sequential)


def test_truncated_stream_is_premature_end(photo):
    data = _jpeg(photo)
    assert jc.check_jpeg(data[: len(data) // 2]) in (jc._MESSAGES[2], jc._MESSAGES[5])
    assert jc.check_jpeg(data[:-2]) == jc._MESSAGES[5]  # no EOI


def test_extraneous_bytes_before_eoi(photo):
    data = _jpeg(photo)
    assert jc.check_jpeg(data[:-2] + b"\x12\x34\x56" + data[-2:]) == jc._MESSAGES[3]


def test_wrong_restart_marker(ndpi_stream):
    data = bytearray(ndpi_stream)
    positions = [i for i in range(len(data) - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7]
    assert len(positions) > 10
    data[positions[5] + 1] = 0xD0 + (data[positions[5] + 1] - 0xD0 + 3) % 8
    assert jc.check_jpeg(bytes(data)) == jc._MESSAGES[4]


def test_random_damage_is_mostly_found():
    data = _jpeg(smooth_image(400, 400), quality=90)
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(40):
        d = bytearray(data)
        for q in rng.integers(len(d) // 4, len(d) - 10, 7):
            d[q] = (d[q] + int(rng.integers(1, 256))) % 256
        found += jc.check_jpeg(bytes(d)) is not None
    assert found >= 28  # measured 83 of 100 with 7 bytes changed; the rest decodes to valid-looking codes


def test_not_a_jpeg():
    assert jc.check_jpeg(b"GIF89a....") is not None


def test_interpreted_and_compiled_walkers_agree(photo, ndpi_stream, monkeypatch):
    """The numba-compiled kernel is the same code as the interpreted one: same verdicts on the same streams."""
    rng = np.random.default_rng(11)
    streams = [_jpeg(photo), ndpi_stream, _jpeg(photo, restart_marker_blocks=2)]
    for _ in range(12):
        d = bytearray(_jpeg(photo))
        for q in rng.integers(len(d) // 4, len(d) - 10, 3):
            d[q] ^= int(rng.integers(1, 256))
        streams.append(bytes(d))
    monkeypatch.setattr(jc, "ENGINE", "python")
    monkeypatch.setattr(jc, "_verdicts", {})
    interpreted = [jc.check_jpeg(s) for s in streams]
    monkeypatch.setattr(jc, "ENGINE", "numba")
    monkeypatch.setattr(jc, "_verdicts", {})
    compiled = [jc.check_jpeg(s) for s in streams]
    assert jc._compiled is not None
    assert interpreted == compiled
    assert interpreted[:3] == [None, None, None] and any(interpreted[3:])
