"""Direct chunk writes (``writers.chunkio``) leave the bytes zarr would, and read back what was written."""

from __future__ import annotations

import numpy as np
import zarr

from vimscope.types import Box
from vimscope.writers.chunkio import ChunkArray, ChunkIO


def _codecs():
    import imagecodecs.numcodecs as icn
    import numcodecs

    icn.register_codecs(["imagecodecs_jpeg"], verbose=False)
    return icn.Jpeg(level=90), numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_chunks_are_the_bytes_zarr_writes(tmp_path):
    jpeg, blosc = _codecs()
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (3, 300, 330)), 0, 255).astype(np.uint8)
    probs = rng.integers(0, 256, (4, 300, 330), dtype=np.uint8)
    probs[:, :128, :128] = 0  # one chunk of nothing but the fill value: not stored
    cases = [("image", image, (1, 128, 128), jpeg), ("probs", probs, (4, 128, 128), blosc)]
    io = ChunkIO(threads=3)
    for name, data, chunks, codec in cases:
        ref = zarr.open_group(str(tmp_path / "zarr"), mode="a", zarr_format=2).create_array(
            name,
            shape=data.shape,
            chunks=chunks,
            dtype="uint8",
            compressors=codec,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        ref[...] = data
        mine = ChunkArray(tmp_path / "mine" / name, data.shape, chunks, "uint8", codec)
        for y in range(0, 300, 128):  # whole (and edge) chunks, as the pipeline writes them
            io.write(mine, Box(0, y, 330, min(128, 300 - y)), data[:, y : y + 128])
        io.wait()
        theirs = {k: v for k, v in _files(tmp_path / "zarr" / name).items() if not k.startswith(".")}
        assert _files(tmp_path / "mine" / name) == theirs
        back = io.read(mine, Box(5, 7, 300, 250))
        np.testing.assert_array_equal(back, np.asarray(ref[:, 7:257, 5:305]))
    io.close()


def test_partial_chunks_are_read_updated_and_rewritten(tmp_path):
    _, blosc = _codecs()
    arr = ChunkArray(tmp_path / "labels", (200, 150), (64, 64), "uint32", blosc)
    io = ChunkIO(threads=2)
    full = np.zeros((200, 150), np.uint32)
    rng = np.random.default_rng(1)
    for _ in range(12):  # overlapping windows, as instances paint them
        x, y = rng.integers(0, 140), rng.integers(0, 190)
        box = Box(int(x), int(y), int(rng.integers(1, 150 - x)), int(rng.integers(1, 200 - y)))
        block = rng.integers(0, 5, (box.h, box.w)).astype(np.uint32)
        io.write(arr, box, block)
        full[box.y : box.y1, box.x : box.x1] = block
    np.testing.assert_array_equal(io.read(arr, Box(0, 0, 150, 200)), full)
    io.write(arr, Box(0, 0, 150, 200), np.zeros((200, 150), np.uint32))  # all fill value: the files go
    io.close()
    assert not [p for p in (tmp_path / "labels").rglob("*") if p.is_file()]


def test_reads_of_lossless_chunks_come_from_memory_within_the_budget(tmp_path):
    jpeg, blosc = _codecs()
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 9, (256, 256), dtype=np.uint32)
    image = np.clip(rng.normal(128, 40, (3, 256, 256)), 0, 255).astype(np.uint8)
    chunk_bytes = 64 * 64 * 4
    io = ChunkIO(threads=2, cache_bytes=5 * chunk_bytes)  # room for the last 5 label chunks
    arr = ChunkArray(tmp_path / "labels", labels.shape, (64, 64), "uint32", blosc)
    img = ChunkArray(tmp_path / "image", image.shape, (1, 64, 64), "uint8", jpeg)
    assert arr.lossless and not img.lossless
    for y in range(0, 256, 64):
        io.write(arr, Box(0, y, 256, 64), labels[y : y + 64])
        io.write(img, Box(0, y, 256, 64), image[:, y : y + 64])
    io.wait()
    back = io.read(arr, Box(0, 192, 256, 64))  # the last row of 4 chunks: all in memory
    assert io.cache_hits == 4
    np.testing.assert_array_equal(back, labels[192:])
    back[...] = 0  # a read is a copy: the cache keeps its chunks
    np.testing.assert_array_equal(io.read(arr, Box(0, 0, 256, 256)), labels)  # older rows: from the files
    assert io.cache_hits == 4 + 5
    decoded = io.read(img, Box(0, 0, 256, 256))  # JPEG: always the decoded file, as a resumed run reads it
    assert io.cache_hits == 9 and not np.array_equal(decoded, image)
    assert np.abs(decoded.astype(int) - image).mean() < 20  # the image, through the codec
    plain = ChunkArray(tmp_path / "copy", image.shape, (3, 64, 64), "uint8", blosc, cache=False)
    assert plain.lossless and not plain.cached  # lossless, but kept out of memory (the image copy)
    io.write(plain, Box(0, 0, 256, 256), image)
    np.testing.assert_array_equal(io.read(plain, Box(0, 0, 256, 256)), image)
    assert io.cache_hits == 9
    io.close()


def test_a_rewritten_chunk_is_read_as_rewritten(tmp_path):
    _, blosc = _codecs()
    arr = ChunkArray(tmp_path / "labels", (100, 100), (64, 64), "uint32", blosc)
    io = ChunkIO(threads=2)
    io.write(arr, Box(0, 0, 100, 100), np.ones((100, 100), np.uint32))
    io.write(arr, Box(10, 10, 20, 20), np.full((20, 20), 7, np.uint32))  # a partial update of chunk (0, 0)
    want = np.ones((100, 100), np.uint32)
    want[10:30, 10:30] = 7
    np.testing.assert_array_equal(io.read(arr, Box(0, 0, 100, 100)), want)
    io.close()
    np.testing.assert_array_equal(ChunkIO(threads=1, cache_bytes=0).read(arr, Box(0, 0, 100, 100)), want)
