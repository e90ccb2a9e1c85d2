"""JPEG-tiled TIFFs as scanners write them, for the raw-tile tests: RGB-photometric tiles the way Aperio stores them
(untransformed RGB samples, component ids 0-2, no JFIF or Adobe marker, tables in JPEGTables) and YCbCr tiles
(tifffile's own JFIF streams, optionally with their tables moved to JPEGTables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

SOI, EOI = b"\xff\xd8", b"\xff\xd9"


def segments(stream: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment bytes) from SOI up to and including SOS; the rest (scan data, EOI) as marker 0."""
    out, pos = [], 2
    while pos < len(stream):
        marker = stream[pos + 1]
        length = (stream[pos + 2] << 8) | stream[pos + 3]
        out.append((marker, stream[pos : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            out.append((0, stream[pos:]))
            break
    return out


def _renumber(segment: bytes, ids=(0, 1, 2)) -> bytes:
    """SOF or SOS with its component ids replaced (Aperio numbers them 0, 1, 2)."""
    s = bytearray(segment)
    if s[1] == 0xDA:
        for c in range(s[4]):
            s[5 + 2 * c] = ids[c]
    else:
        for c in range(s[9]):
            s[10 + 3 * c] = ids[c]
    return bytes(s)


def split_tables(stream: bytes, *, aperio: bool) -> tuple[bytes, bytes]:
    """(abbreviated tile stream, tables stream): DQT/DHT moved out; ``aperio`` also drops APPn and renumbers."""
    tile, tables = [SOI], [SOI]
    for marker, seg in segments(stream):
        if marker in (0xDB, 0xC4):
            tables.append(seg)
        elif aperio and 0xE0 <= marker <= 0xEF:
            continue
        elif aperio and marker in (0xC0, 0xDA):
            tile.append(_renumber(seg))
        else:
            tile.append(seg)
    return b"".join(tile), b"".join(tables) + EOI


def write_jpeg_tiff(
    path: Path, image: np.ndarray, *, tile: int = 64, photometric: str = "rgb", tables: bool = True, quality: int = 92
) -> Path:
    """A one-level JPEG-tiled TIFF of ``image`` (h, w, 3): ``photometric`` "rgb" (Aperio-style RGB samples) or
    "ycbcr"; ``tables`` puts the tiles' DQT/DHT in a shared JPEGTables tag."""
    import imagecodecs

    h, w = image.shape[:2]
    streams, shared = [], None
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            block = np.zeros((tile, tile, 3), np.uint8)
            part = image[y : y + tile, x : x + tile]
            block[: part.shape[0], : part.shape[1]] = part
            if photometric == "rgb":
                s = imagecodecs.jpeg8_encode(block, level=quality, outcolorspace="RGB", subsampling=(1, 1))
            else:
                s = imagecodecs.jpeg8_encode(block, level=quality)
            if tables or photometric == "rgb":
                s, t = split_tables(s, aperio=photometric == "rgb")
                assert shared in (None, t), "tiles of one quality share their tables"
                shared = t
            streams.append(s)
    extratags = [(347, 7, len(shared), shared, True)] if tables else []
    if photometric == "rgb" and not tables:
        raise ValueError("Aperio-style RGB tiles keep their tables in JPEGTables")
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            iter(streams),
            shape=(h, w, 3),
            dtype=np.uint8,
            tile=(tile, tile),
            compression="jpeg",
            photometric="rgb",
            resolution=(1e4 / 0.25, 1e4 / 0.25),
            resolutionunit="CENTIMETER",
            extratags=extratags,
            metadata=None,
        )
    with tifffile.TiffFile(path, mode="r+b") as tif:  # tifffile writes YCbCr for JPEG; Aperio says RGB
        tif.pages[0].tags["PhotometricInterpretation"].overwrite(2 if photometric == "rgb" else 6)
    return path
