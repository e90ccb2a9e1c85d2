"""The image size a tile's own codec stream claims (JPEG, PNG, WebP, JPEG 2000), read from its first bytes.

WHY: these codecs carry their own width and height, and the decoders allocate what the stream claims, not what the
TIFF tile holds: a 64 x 64 PNG tile whose header says 70,000 x 70,000 costs 13.7 GB before it fails. A tile whose
stream claims more pixels than the tile is damaged (or hostile) and is never decoded.
"""

from __future__ import annotations

import struct

HEAD_BYTES = 4096  # enough for the JPEG markers before the frame header of a TIFF tile, and every other header

JPEG, PNG, WEBP = 7, 34933, 50001
JPEG2000 = (33003, 33004, 33005, 34712)
SELF_DESCRIBING = (JPEG, PNG, WEBP, *JPEG2000)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):
            return None  # a scan before any frame header (abbreviated tables) or the end: nothing claimed
        length = (head[pos + 2] << 8) | head[pos + 3]
        if marker in _SOF and pos + 9 <= len(head):
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    kind = head[12:16]
    if kind == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    if kind == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _jpeg2000(head: bytes) -> tuple[int, int] | None:
    at = head.find(b"\xff\x4f\xff\x51")  # SOC then SIZ, in a raw codestream or inside a JP2 file's jp2c box
    if at < 0 or at + 24 > len(head):
        return None
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", head[at + 8 : at + 24])
    return xsiz - xo, ysiz - yo


def claimed_size(head: bytes, compression: int) -> tuple[int, int] | None:
    """(width, height) the stream starting with ``head`` claims, for a TIFF ``compression`` code; None if unknown."""
    if compression == JPEG and head[:2] == b"\xff\xd8":
        return _jpeg(head)
    if compression == PNG and head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if compression == WEBP:
        return _webp(head)
    if compression in JPEG2000:
        return _jpeg2000(head)
    return None


def oversized(head: bytes, compression: int, tile: tuple[int, int]) -> str | None:
    """A one-line complaint when the stream claims more pixels than its (width, height) ``tile``, else None."""
    size = claimed_size(head, compression)
    if size is None or (size[0] <= tile[0] and size[1] <= tile[1]):
        return None
    return f"the tile's stream claims {size[0]} x {size[1]} px, more than its {tile[0]} x {tile[1]} px tile"
