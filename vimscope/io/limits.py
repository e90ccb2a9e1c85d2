"""The most bytes one tile, strip or chunk may decode to: decompression bombs are refused before any allocation.

WHY: a 14 MB TIFF whose one deflate strip claims 70,000 x 70,000 RGB decodes to 14.7 GB, and a reader can only
decode whole strips, tiles or chunks. Every backend reads the decoded size from the file's own header (TIFF tags,
zarr array metadata, the PNG/JPEG header) when it opens the file and raises ``DecodeLimitError`` (one line, its
own exit code) when one piece would exceed the limit.

The limit: the reader option ``max_decoded_mb`` (``open_slide(..., max_decoded_mb=...)``), else the environment
variable ``VIMSCOPE_MAX_DECODED_MB``, else ``DEFAULT_MAX_DECODED_MB``.
"""

from __future__ import annotations

import math
import os

from vimscope.errors import ConfigError, DecodeLimitError

DEFAULT_MAX_DECODED_MB = 512
ENV_VAR = "VIMSCOPE_MAX_DECODED_MB"


def max_decoded_bytes(max_decoded_mb: float | None = None) -> int:
    """The limit in bytes: ``max_decoded_mb`` when given, else the environment variable, else the default."""
    value, origin = max_decoded_mb, "max_decoded_mb"
    if value is None:
        value, origin = os.environ.get(ENV_VAR) or DEFAULT_MAX_DECODED_MB, ENV_VAR
    try:
        mb = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin} must be a number of megabytes, got {value!r}") from None
    if not (math.isfinite(mb) and mb > 0):
        raise ConfigError(f"{origin} must be a positive number of megabytes, got {value!r}")
    return int(mb * (1 << 20))


def _size(nbytes: float) -> str:
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def check_decoded(path, what: str, shape, itemsize: float, limit: int) -> None:
    """Raise DecodeLimitError when ``what`` (e.g. "a strip of level 0") of ``shape`` x ``itemsize`` bytes would
    decode to more than ``limit`` bytes."""
    dims = [int(n) for n in shape]
    nbytes = math.prod(dims) * itemsize
    if nbytes > limit:
        raise DecodeLimitError(
            f"{path}: {what} would decode to {_size(nbytes)} ({' x '.join(map(str, dims))} x {itemsize:g} bytes), "
            f"above the {_size(limit)} limit: a decompression bomb, or a file to re-save tiled "
            f"(raise {ENV_VAR} or max_decoded_mb only for a file you trust)"
        )
