"""Cloud-optimised TIFF byte layout: every IFD first, then tiles from the smallest overview to full resolution.

tifffile writes each page's IFD before its tiles, which readers accept but the COG layout (what lets a client
fetch the pyramid's directory in one range request and overviews before detail) does not. This small writer
lays the file out as GDAL's COG driver does: header, IFDs of level 0..n (overviews chained after the main
image, NewSubfileType 1), then the tile data of level n..0, tiles row-major, deflate-compressed. Tags come in as
tifffile-style ``(code, dtype, count, value)`` tuples; the result is read back with tifffile in the tests.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimscope.writers.ometiff import iter_tiles

# TIFF type codes and their struct formats
_TYPES = {"B": (1, "B"), "s": (2, "s"), "H": (3, "H"), "I": (4, "I"), "d": (12, "d"), "Q": (16, "Q")}
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}
PHOTOMETRIC = {"minisblack": 1, "rgb": 2, "palette": 3}


@dataclass
class _Tag:
    code: int
    type: str  # key of _TYPES
    values: tuple | bytes

    @property
    def count(self) -> int:
        return len(self.values)

    def payload(self) -> bytes:
        if self.type == "s":
            return bytes(self.values)
        return struct.pack(f"<{len(self.values)}{_TYPES[self.type][1]}", *self.values)


def _tag(code: int, dtype: str, value) -> _Tag:
    if dtype == "s":
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return _Tag(code, "s", raw if raw.endswith(b"\0") else raw + b"\0")
    values = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else (value,)
    return _Tag(code, dtype, tuple(v.item() if isinstance(v, np.generic) else v for v in values))


class _Layout:
    """Sizes and offsets of one IFD with its out-of-line values."""

    def __init__(self, tags: list[_Tag], big: bool) -> None:
        self.tags = sorted(tags, key=lambda t: t.code)
        self.big = big
        entry, head, tail = (20, 8, 8) if big else (12, 2, 4)
        self.inline = 8 if big else 4
        self.entries_size = head + entry * len(self.tags) + tail
        self.extra_size = sum(_pad2(len(t.payload())) for t in self.tags if len(t.payload()) > self.inline)

    @property
    def size(self) -> int:
        return self.entries_size + self.extra_size

    def encode(self, offset: int, next_ifd: int) -> bytes:
        big = self.big
        out = bytearray(struct.pack("<Q" if big else "<H", len(self.tags)))
        extra = bytearray()
        extra_at = offset + self.entries_size
        for t in self.tags:
            payload = t.payload()
            code = _TYPES[t.type][0]
            out += struct.pack("<HHQ" if big else "<HHI", t.code, code, t.count)
            if len(payload) <= self.inline:
                out += payload.ljust(self.inline, b"\0")
            else:
                out += struct.pack("<Q" if big else "<I", extra_at + len(extra))
                extra += payload.ljust(_pad2(len(payload)), b"\0")
        out += struct.pack("<Q" if big else "<I", next_ifd)
        return bytes(out + extra)


def _pad2(n: int) -> int:
    return n + (n & 1)


def write_cog(
    path: str | os.PathLike,
    levels: Sequence,
    *,
    tile: int = 512,
    photometric: str = "minisblack",
    colormap: np.ndarray | None = None,
    main_tags: Sequence[tuple] = (),
    level_tags: Sequence[tuple] = (),
    level: int = 6,
) -> Path:
    """Write ``levels`` ((h, w) or (h, w, c) sliceables, level 0 first) as a deflate-tiled COG at ``path``.

    ``main_tags`` go on the full-resolution IFD only, ``level_tags`` on every IFD; each is ``(code, dtype,
    count, value)`` (tifffile's extratags form: dtype "H", "I", "d", "s", "B" or "Q"; count is ignored).
    """
    if tile % 16:
        raise ValueError("TIFF tiles must be multiples of 16")
    path = Path(path)
    dtype = np.dtype(levels[0].dtype)
    spp = levels[0].shape[2] if len(levels[0].shape) == 3 else 1
    raw = sum(math.prod(lv.shape) for lv in levels) * dtype.itemsize
    big = raw * 1.05 + (1 << 20) > 2**32 - 1
    grids = [(math.ceil(lv.shape[0] / tile), math.ceil(lv.shape[1] / tile)) for lv in levels]

    def tags_for(i: int, offsets=None, counts=None) -> list[_Tag]:
        h, w = levels[i].shape[:2]
        n = grids[i][0] * grids[i][1]
        off_type = "Q" if big else "I"
        tags = [
            _tag(254, "I", 1 if i else 0),
            _tag(256, "I", w),
            _tag(257, "I", h),
            _tag(258, "H", [dtype.itemsize * 8] * spp),
            _tag(259, "H", 8),  # Adobe deflate
            _tag(262, "H", PHOTOMETRIC[photometric]),
            _tag(277, "H", spp),
            _tag(284, "H", 1),
            _tag(322, "I", tile),
            _tag(323, "I", tile),
            _tag(324, off_type, offsets if offsets is not None else [0] * n),
            _tag(325, off_type, counts if counts is not None else [0] * n),
            _tag(339, "H", [_SAMPLE_FORMAT[dtype.kind]] * spp),
        ]
        if colormap is not None:
            tags.append(_tag(320, "H", np.asarray(colormap, np.uint16).ravel()))
        extra = list(level_tags) + (list(main_tags) if i == 0 else [])
        tags += [_tag(code, dt, value) for code, dt, _count, value, *_ in extra]
        return tags

    layouts = [_Layout(tags_for(i), big) for i in range(len(levels))]
    header = 16 if big else 8
    ifd_offsets = []
    pos = header
    for lay in layouts:
        ifd_offsets.append(pos)
        pos += _pad2(lay.size)
    with open(path, "wb") as f:
        f.write(b"II" + (struct.pack("<HHHQ", 43, 8, 0, header) if big else struct.pack("<HI", 42, header)))
        f.write(b"\0" * (pos - header))
        offsets: list[list[int]] = [[] for _ in levels]
        counts: list[list[int]] = [[] for _ in levels]
        for i in reversed(range(len(levels))):  # smallest overview first
            for block in iter_tiles(levels[i], tile):
                full = np.zeros((tile, tile) + block.shape[2:], dtype)
                full[: block.shape[0], : block.shape[1]] = block
                data = zlib.compress(full.tobytes(), level)
                offsets[i].append(f.tell())
                counts[i].append(len(data))
                f.write(data)
        for i, start in enumerate(ifd_offsets):
            lay = _Layout(tags_for(i, offsets[i], counts[i]), big)
            if lay.size != layouts[i].size:
                raise AssertionError("IFD size changed between layout and write")
            nxt = ifd_offsets[i + 1] if i + 1 < len(ifd_offsets) else 0
            f.seek(start)
            f.write(lay.encode(start, nxt))
        f.flush()
        os.fsync(f.fileno())
    return path


def cog_layout_problems(path: str | os.PathLike) -> list[str]:
    """What keeps a TIFF from the COG layout (empty when it has it): IFDs first, overview tiles first."""
    import tifffile

    problems = []
    with tifffile.TiffFile(path) as tf:
        pages = list(tf.pages)
        first_data = min(min(o for o in p.dataoffsets if o) for p in pages)
        if pages[0].offset not in (8, 16):
            problems.append(f"first IFD at {pages[0].offset}, not right after the header")
        if any(p.offset > first_data for p in pages):
            problems.append("an IFD comes after tile data")
        starts = [min(o for o in p.dataoffsets if o) for p in pages]
        if any(starts[i] < starts[i + 1] for i in range(len(starts) - 1)):
            problems.append("a finer level's tiles come before a coarser level's")
        if not all(p.is_tiled for p in pages):
            problems.append("not every level is tiled")
    return problems
