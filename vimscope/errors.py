"""Errors a user can cause, each with its own exit code; the CLI prints their message as one line.

Anything that is not a ``VimscopeError`` is a bug: the CLI shows a one-line summary and asks for ``--debug``.
"""

from __future__ import annotations


class VimscopeError(Exception):
    """Base of every error caused by input, configuration or environment rather than by a bug."""

    exit_code = 1


class SlideNotFoundError(VimscopeError):
    exit_code = 3


class UnsupportedFormatError(VimscopeError):
    exit_code = 4


class CorruptSlideError(VimscopeError):
    exit_code = 5


class EmptyFileError(CorruptSlideError):
    """A zero-byte file: usually a failed copy or download, worth its own message and code."""

    exit_code = 20


class NoSlideInFolderError(SlideNotFoundError):
    """A folder was given that is neither an OME-Zarr nor a DICOM series and holds no slide to pick."""

    exit_code = 21


class NotASlideError(UnsupportedFormatError):
    """The name says slide (.svs, .tif...) but the content is something else, e.g. text or HTML."""

    exit_code = 22


class RegionError(VimscopeError):
    """A requested box or region lies (partly) outside the image, or is empty."""

    exit_code = 6


class MissingPixelSizeError(VimscopeError):
    """A command needs physical units and the image has no pixel size; the message says to pass --mpp."""

    exit_code = 7


class ConfigError(VimscopeError):
    exit_code = 8


class OutputError(VimscopeError):
    """The output cannot be written (full disk, read-only filesystem, permissions); work so far is kept."""

    exit_code = 9


class ModelError(VimscopeError):
    """A model name, weights file or checkpoint that cannot be used as asked."""

    exit_code = 10


class DamagedTileError(VimscopeError):
    """A tile whose decoder reported corrupt data. Readers raise it; the pipeline records it and fills the tile."""

    exit_code = 11

    def __init__(self, message: str, box=None, level: int = 0, tiles=None, reason: str | None = None):
        super().__init__(message)
        self.box = box
        self.level = level
        self.tiles = list(tiles or [])  # the damaged native tiles (boxes in level pixels), when the reader knows
        self.reason = reason or message  # the decoder's complaint alone, without path and box


class DecodeLimitError(VimscopeError):
    """A tile, strip or chunk would decode to more bytes than the limit (``max_decoded_mb``): a decompression bomb,
    or a file laid out in pieces too big to read one at a time. Refused before anything is allocated."""

    exit_code = 23


class BatchFailedError(VimscopeError):
    """A batch ran to the end but some slides failed; the message counts them and names the report."""

    exit_code = 12


class ClusterError(VimscopeError):
    """The dask.distributed cluster cannot run the batch: unreachable, no workers, or paths workers cannot see."""

    exit_code = 13


class Cancelled(VimscopeError):
    """The run was cancelled through its ``CancelToken``; what was flushed is kept for resume."""

    exit_code = 130
