"""The raw JPEG tiles of a TIFF level as standalone JPEG streams, for decoders other than tifffile's (nvjpeg).

A JPEG tile of a TIFF is usually an abbreviated stream: its quantisation and Huffman tables are stored once, in the
page's JPEGTables tag. ``standalone_jpeg`` splices them in (the tables' segments between SOI and EOI, placed after
the tile's leading APPn segments), so any decoder reads the tile alone. Colour: a tile of an RGB-photometric page
without a JFIF marker holds untransformed RGB samples (Aperio SVS). tifffile and OpenSlide tell libjpeg so out of
band; a decoder given the bytes alone would guess YCbCr from the three components. An Adobe APP14 marker with
transform 0 says "RGB" in the stream itself, and libjpeg, Pillow and nvjpeg read it. YCbCr pages need nothing.

``jpeg_level(reader, level)`` says whether a reader's level is made of such tiles and whether their decoded pixels
are exactly what ``reader.read_rgb`` returns (8-bit RGB, one contiguous tiled page, no NDPI, no sparse tiles).
If so it describes them as plain data (offsets, byte counts, tables), so reading a tile is one ``os.pread`` on a
descriptor that any thread may share. Damage is found as the TIFF backends find it: data past the end of the
file, or what ``io.jpeg.check`` says libjpeg would warn about.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from vimscope.io.jpeg.frames import HEAD_BYTES, oversized
from vimscope.io.jpeg.tilecheck import JPEG, PAST_END
from vimscope.types import Box

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
# APP14 "Adobe": length 14, version 100, flags0 0, flags1 0, transform 0 (no colour transform: RGB samples)
APP14_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
RGB, YCBCR = 2, 6


def _leading_segments(tile: bytes) -> tuple[int, bool]:
    """(end of the APPn/COM segments right after SOI, whether one of them names the colour space: JFIF or Adobe)."""
    pos, named = 2, False
    while pos + 4 <= len(tile) and tile[pos] == 0xFF and (0xE0 <= tile[pos + 1] <= 0xEF or tile[pos + 1] == 0xFE):
        marker, length = tile[pos + 1], (tile[pos + 2] << 8) | tile[pos + 3]
        ident = tile[pos + 4 : pos + 9]
        named |= (marker == 0xE0 and ident.startswith(b"JFIF")) or (marker == 0xEE and ident == b"Adobe")
        pos += 2 + length
    return min(pos, len(tile)), named


def standalone_jpeg(tile: bytes, tables: bytes | None, rgb: bool) -> bytes:
    """One TIFF tile's JPEG stream made decodable alone: JPEGTables spliced in, APP14 (RGB) where ``rgb`` and the
    tile names no colour space itself. A stream that does not start with SOI is returned as it is."""
    if len(tile) < 4 or tile[:2] != SOI:
        return tile
    head, named = _leading_segments(tile)
    body = b""
    if tables and len(tables) >= 4 and tables[:2] == SOI:
        end = tables.rfind(EOI)
        body = tables[2 : end if end >= 2 else len(tables)]
    app = APP14_RGB if rgb and not named else b""
    if not body and not app:
        return tile
    return tile[:head] + app + body + tile[head:]


@dataclass(frozen=True, eq=False)
class JpegLevel:
    """The JPEG tiles of one level of a TIFF file, as plain data (pickles; no handle inside)."""

    path: str
    level: int
    size: tuple[int, int]  # (width, height) of the level
    tile: tuple[int, int]  # (width, height) of a tile (edge tiles are stored full size too)
    offsets: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    tables: bytes | None = field(repr=False)
    rgb: bool  # RGB photometric: tiles without JFIF/Adobe marker get APP14 transform 0
    label: str = ""

    @property
    def grid(self) -> tuple[int, int]:
        """(columns, rows) of tiles."""
        return math.ceil(self.size[0] / self.tile[0]), math.ceil(self.size[1] / self.tile[1])

    def tile_box(self, index: int) -> Box:
        """Tile ``index`` in level pixels, full size (it may reach past the level's right and bottom edges)."""
        nx = self.grid[0]
        tw, th = self.tile
        return Box((index % nx) * tw, (index // nx) * th, tw, th)

    def tiles_in(self, box: Box) -> list[int]:
        """Indices of the tiles that ``box`` (level pixels, inside the level) touches, row-major."""
        tw, th = self.tile
        nx = self.grid[0]
        return [
            ty * nx + tx
            for ty in range(box.y // th, (box.y1 - 1) // th + 1)
            for tx in range(box.x // tw, (box.x1 - 1) // tw + 1)
        ]

    def open(self) -> int:
        """A read-only descriptor; ``os.pread`` on it is safe from every thread at once."""
        return os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def raw(self, fd: int, index: int) -> bytes:
        return os.pread(fd, int(self.counts[index]), int(self.offsets[index]))

    def fetch(self, fd: int, index: int) -> tuple[bytes | None, str | None]:
        """(standalone JPEG stream, None) for a sound tile, (None, what is wrong) for a damaged one: the checks of
        ``tilecheck.TileChecker`` (the TIFF backends' CPU path), so both paths flag the same tiles."""
        from vimscope.io.jpeg.check import check_jpeg

        count = int(self.counts[index])
        data = self.raw(fd, index)
        if len(data) < count:
            return None, PAST_END
        problem = oversized(data[:HEAD_BYTES], JPEG, self.tile) or check_jpeg(data, self.tables)
        if problem:
            return None, problem
        return standalone_jpeg(data, self.tables, self.rgb), None


def _tiff_level(path: str, series_index: int, level: int, size: tuple[int, int], label: str):
    """(JpegLevel, "") for a JPEG-tiled TIFF level whose decoded tiles are the level's RGB pixels, else (None, why)."""
    import tifffile

    from vimscope.io.detect import quiet_tifffile

    with quiet_tifffile(), tifffile.TiffFile(path) as tif:
        if series_index >= len(tif.series):
            return None, f"no image series {series_index}"
        series = tif.series[series_index]
        if level >= len(series.levels):
            return None, f"tifffile sees no level {level}"
        lvl = series.levels[level]
        if len(lvl.pages) != 1 or lvl.pages[0] is None:
            return None, "the level spans several pages"
        page = lvl.pages[0]
        kf = page.keyframe
        if kf.is_ndpi:
            return None, "NDPI levels are one JPEG per page, not tiles"
        if not kf.is_tiled or int(kf.tiledepth) != 1:
            return None, "the level is not tiled"
        if int(kf.compression) != JPEG:
            return None, f"tiles are not JPEG (TIFF compression {int(kf.compression)})"
        if int(kf.bitspersample) != 8 or int(kf.samplesperpixel) != 3 or kf.extrasamples:
            return None, "tiles are not 8-bit RGB"
        if int(kf.planarconfig) != 1 or int(kf.photometric) not in (RGB, YCBCR):
            return None, "tiles are not contiguous RGB or YCbCr"
        if (int(kf.imagewidth), int(kf.imagelength)) != tuple(size):
            return None, "tifffile and the reader disagree about the level's size"
        counts = np.asarray(page.databytecounts, np.int64)
        offsets = np.asarray(page.dataoffsets, np.int64)
        tw, th = int(kf.tilewidth), int(kf.tilelength)
        if len(counts) != math.ceil(size[0] / tw) * math.ceil(size[1] / th):
            return None, "unexpected number of tiles"
        if not counts.all():
            return None, "sparse tiles (some are not stored)"
        tables = bytes(kf.jpegtables) if kf.jpegtables else None
        rgb = int(kf.photometric) == RGB
    return JpegLevel(path, level, tuple(size), (tw, th), offsets, counts, tables, rgb, label), ""


def jpeg_level(reader, level: int) -> tuple[JpegLevel | None, str]:
    """(JpegLevel, "") when ``reader.read_rgb`` at ``level`` returns exactly the decoded JPEG tiles of a TIFF page
    (tifffile reader, or OpenSlide on an Aperio SVS whose levels are the TIFF's pages), else (None, why not)."""
    meta = reader.meta
    if not 0 <= level < meta.native_levels:
        return None, f"level {level} is computed, not stored in the file"
    if not (meta.is_rgb and meta.dtype == "uint8" and meta.bands == 3 and list(meta.rgb_bands) == [0, 1, 2]):
        return None, "the image is not 8-bit RGB"
    if meta.alpha_band is not None:
        return None, "the image has an alpha band"
    backend = getattr(reader, "backend", "")
    if backend == "tifffile":
        series = int(reader.options.get("series", 0))
    elif backend == "openslide" and meta.vendor == "aperio":
        series = 0
    else:
        return None, f"the {backend or 'unknown'} reader ({meta.vendor or 'no vendor'}) has no TIFF JPEG tiles"
    source = getattr(reader, "source", meta.path)
    try:
        return _tiff_level(str(source), series, level, tuple(meta.level_dimensions[level]), str(meta.path))
    except Exception as e:  # not parseable by tifffile: the reader's own path decides
        return None, f"tifffile cannot read the level ({type(e).__name__}: {e})"


__all__ = ["JpegLevel", "jpeg_level", "standalone_jpeg", "APP14_RGB"]
