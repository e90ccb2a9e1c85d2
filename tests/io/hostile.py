"""Hostile inputs, generated (no committed binaries): decompression bombs in each container, corrupt tiles.

A bomb here is honest: its compressed data really decodes to the size its header claims (zeros, deflated with a
full flush every block so one compressed block is repeated: a 14.7 GB strip costs 14 MB and a second to make).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

_BLOCK = 16 << 20  # uncompressed bytes per repeated deflate block


def deflate_zeros(nbytes: int, *, wbits: int = 15) -> bytes:
    """A zlib (wbits 15) or raw deflate (wbits -15) stream of ``nbytes`` zero bytes, built in O(one block) time."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    head = c.compress(b"") if wbits > 0 else b""
    full, rest = divmod(nbytes, _BLOCK)
    block = c.compress(bytes(_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH) if full else b""
    parts = [head, block * full]
    tail = c.compress(bytes(rest)) + c.flush(zlib.Z_FULL_FLUSH) if rest else b""
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block (BFINAL) on a byte boundary
    parts += [tail, end]
    if wbits > 0:  # the zlib trailer: adler32 of n zero bytes is (n mod 65521) << 16 | 1
        parts.append(struct.pack(">I", ((nbytes % 65521) << 16) | 1))
    return b"".join(parts)


def _ifd_entry(tag: int, typ: int, count: int, value: int) -> bytes:
    if typ == 3 and count == 1:
        return struct.pack("<HHIH2x", tag, typ, count, value)
    return struct.pack("<HHII", tag, typ, count, value)


def bomb_tiff(path: Path, width: int, height: int, *, tiled: bool = False, payload: bytes | None = None) -> Path:
    """An RGB uint8 TIFF made of ONE deflate strip (or one tile) of ``width`` x ``height`` zeros."""
    data = payload if payload is not None else deflate_zeros(width * height * 3)
    segment = [(322, 4, 1, width), (323, 4, 1, height), (324, 4, 1, 0), (325, 4, 1, len(data))]
    strip = [(273, 4, 1, 0), (278, 4, 1, height), (279, 4, 1, len(data))]
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, 0),  # BitsPerSample 8, 8, 8 (stored after the IFD)
        (259, 3, 1, 8),  # Adobe deflate
        (262, 3, 1, 2),  # RGB
        (277, 3, 1, 3),
        (284, 3, 1, 1),
        *(segment if tiled else strip),
    ]
    entries.sort()
    bps_offset = 8 + 2 + 12 * len(entries) + 4
    data_offset = bps_offset + 8
    where = {258: bps_offset, 273: data_offset, 324: data_offset}
    entries = [(t, typ, n, where.get(t, v)) for t, typ, n, v in entries]
    ifd = struct.pack("<H", len(entries)) + b"".join(_ifd_entry(*e) for e in entries) + struct.pack("<I", 0)
    with open(path, "wb") as fh:
        fh.write(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<HHHH", 8, 8, 8, 0) + data)
    return path


def bomb_zarr(path: Path, width: int, height: int) -> Path:
    """An OME-Zarr (NGFF 0.4, Zarr v2) whose one zlib chunk holds ``width`` x ``height`` x 3 zeros."""
    path.mkdir(parents=True)
    (path / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    ms = {"version": "0.4", "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}  # fmt: skip
    (path / ".zattrs").write_text(json.dumps({"multiscales": [ms]}))
    level = path / "0"
    level.mkdir()
    meta = {
        "zarr_format": 2, "shape": [3, height, width], "chunks": [3, height, width], "dtype": "|u1",
        "compressor": {"id": "zlib", "level": 1}, "fill_value": 0, "order": "C", "filters": None,
        "dimension_separator": "/",
    }  # fmt: skip
    (level / ".zarray").write_text(json.dumps(meta))
    (level / "0" / "0").mkdir(parents=True)
    (level / "0" / "0" / "0").write_bytes(deflate_zeros(width * height * 3))
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int, height: int) -> Path:
    """An RGB PNG of ``width`` x ``height`` zeros (filter byte 0 per row): tiny on disk, huge decoded."""
    raw = (width * 3 + 1) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", deflate_zeros(raw))
    path.write_bytes(png + _png_chunk(b"IEND", b""))
    return path


def corrupt_segment(path: Path, index: int, *, seed: int = 0, nbytes: int = 500, at: float = 0.25) -> tuple[int, int]:
    """Overwrite up to ``nbytes`` random bytes from ``at`` (a fraction) into TIFF segment ``index`` of page 0.

    Returns (offset, count) of the segment."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
    n = min(nbytes, count // 2)
    data = bytearray(path.read_bytes())
    start = offset + int(count * at)
    data[start : start + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return offset, count


def ztxt_bomb_png(path: Path, text_bytes: int = 200 << 20) -> Path:
    """A 16 x 16 PNG with a zTXt comment that inflates to ``text_bytes`` (Pillow stops at MAX_TEXT_CHUNK)."""
    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    text = _png_chunk(b"zTXt", b"Comment\x00\x00" + deflate_zeros(text_bytes))
    idat = _png_chunk(b"IDAT", zlib.compress(bytes((16 * 3 + 1) * 16)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + text + idat + _png_chunk(b"IEND", b""))
    return path
