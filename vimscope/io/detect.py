"""Which backend reads a path, decided by content (magic bytes, TIFF tags, zarr metadata), never by extension.

The extension is used only to word an error: a text file named ``.svs`` is "not a slide", a GIF is "unsupported".
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vimscope.errors import (
    CorruptSlideError,
    EmptyFileError,
    NoSlideInFolderError,
    NotASlideError,
    SlideNotFoundError,
    UnsupportedFormatError,
)

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# formats we recognise but do not read, with what to do about them
KNOWN_UNSUPPORTED = [
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (unpack it first)"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 file (convert it to a tiled TIFF)"),
    (b"\xff\x4f\xff\x51", "a raw JPEG 2000 codestream (convert it to a tiled TIFF)"),
    (b"ZISRAWFILE", "a Zeiss CZI file (convert it with bioformats2raw to OME-Zarr)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"RIFF", "a RIFF/WebP file"),
]

# extensions that promise an image we read; used only to word the error when the content is something else
IMAGE_SUFFIXES = {
    ".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".mrxs", ".vms", ".vmu", ".dcm", ".qptiff", ".btf",
    ".tf8", ".tf2", ".zarr", ".png", ".jpg", ".jpeg", ".svslide",
}  # fmt: skip

OPENSLIDE_TIFF_FLAGS = ("is_svs", "is_ndpi", "is_scn", "is_philips", "is_bif")


_quiet_lock = threading.Lock()
_quiet_depth = [0, logging.NOTSET]  # nesting depth across threads, level to restore


@contextmanager
def quiet_tifffile():
    """Silence tifffile's log warnings (e.g. a GDAL_NODATA of -10000 on uint8 data) while we parse tags ourselves.

    Reentrant across threads: the first to enter lowers the level, the last to leave restores it.
    """
    logger = logging.getLogger("tifffile")
    with _quiet_lock:
        if _quiet_depth[0] == 0:
            _quiet_depth[1] = logger.level
            logger.setLevel(logging.CRITICAL)
        _quiet_depth[0] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth[0] -= 1
            if _quiet_depth[0] == 0:
                logger.setLevel(_quiet_depth[1])


@dataclass
class Detection:
    backend: str  # "openslide", "tifffile", "zarr", "image"
    source: Path  # what the backend opens (a .dcm file of a DICOM folder, the zarr root...)
    vendor: str | None = None


def _head(path: Path, n: int = 512) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def _zarr_root(path: Path) -> Path | None:
    """The OME-Zarr image group at or just below ``path`` (a bioformats2raw layout puts it in ``0/``)."""
    for candidate in (path, path / "0"):
        attrs = None
        if (candidate / ".zattrs").is_file():
            attrs = json.loads((candidate / ".zattrs").read_text() or "{}")
        elif (candidate / "zarr.json").is_file():
            attrs = json.loads((candidate / "zarr.json").read_text() or "{}").get("attributes", {})
        if attrs is None:
            continue
        if "multiscales" in attrs or "multiscales" in attrs.get("ome", {}):
            return candidate
    return None


def _detect_folder(path: Path) -> Detection:
    if (path / ".zattrs").exists() or (path / "zarr.json").exists() or (path / ".zgroup").exists():
        root = _zarr_root(path)
        if root is None:
            raise UnsupportedFormatError(f"{path} is a zarr group without OME-NGFF multiscales metadata")
        return Detection("zarr", root, "ome-zarr")
    dicoms = []
    for child in sorted(path.iterdir()):
        if child.is_file() and child.stat().st_size > 132:
            head = _head(child, 132)
            if head[128:132] == b"DICM":
                dicoms.append(child)
    if dicoms:
        return Detection("openslide", dicoms[0], "dicom")
    raise NoSlideInFolderError(
        f"{path} is a folder without a slide: expected an OME-Zarr (.zattrs or zarr.json) or DICOM files; "
        "pass the slide file itself"
    )


def _broken_chain(tif, size: int) -> str | None:
    """The last readable image directory points to a next one past the end of the file: a cut-off file."""
    import struct

    fmt = tif.tiff
    if fmt.is_ndpi:
        return None
    last = tif.pages[len(tif.pages) - 1]
    fh = tif.filehandle
    fh.seek(last.offset)
    count = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
    fh.seek(last.offset + fmt.tagnosize + count * fmt.tagsize)
    raw = fh.read(fmt.offsetsize)
    if len(raw) < fmt.offsetsize:
        return f"file is truncated inside its last image directory ({size} bytes)"
    following = struct.unpack(fmt.offsetformat, raw)[0]
    if following >= size:
        return f"file is truncated: an image directory at byte {following} lies past its end ({size} bytes)"
    return None


def _truncation(tif, size: int) -> str | None:
    """Why a TIFF's data runs past the end of the file, or None."""
    broken = _broken_chain(tif, size)
    if broken:
        return broken
    end = 0
    for page in tif.pages[:256]:
        offsets = getattr(page, "dataoffsets", ())
        counts = getattr(page, "databytecounts", ())
        if len(offsets):
            end = max(end, max(int(o) + int(c) for o, c in zip(offsets, counts)))
    if end > size:
        return f"file is truncated: its image data needs {end} bytes but the file has {size} (an interrupted copy?)"
    return None


def _no_directory(path: Path, size: int) -> str:
    """Why a TIFF has no readable image directory: usually a cut-off file whose directory was at the end."""
    import struct

    head = _head(path, 16)
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
    if offset >= size:
        return f"file is truncated: its first image directory (byte {offset}) lies past its end ({size} bytes)"
    return "damaged TIFF: no readable image directory"


def _detect_tiff(path: Path, size: int) -> Detection:
    import tifffile

    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            if len(tif.pages) == 0:
                raise CorruptSlideError(f"{path}: {_no_directory(path, size)}")
            page = tif.pages.first
            problem = _truncation(tif, size)
            if problem:
                raise CorruptSlideError(f"{path}: {problem}")
            for flag in OPENSLIDE_TIFF_FLAGS:
                if getattr(page, flag, False):
                    return Detection("openslide", path, flag[3:])
            vendor = "ome-tiff" if tif.is_ome else "qptiff" if page.is_qpi else "geotiff" if page.is_geotiff else "tiff"
            return Detection("tifffile", path, vendor)
    except CorruptSlideError:
        raise
    except Exception as e:  # tifffile cannot parse it: maybe OpenSlide can, else it is damaged
        vendor = _openslide_vendor(path)
        if vendor:
            return Detection("openslide", path, vendor)
        raise CorruptSlideError(f"{path}: damaged TIFF ({e})") from e


def _openslide_vendor(path: Path) -> str | None:
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(path))
    except Exception:
        return None


def _why_missing(path: Path) -> str:
    """Why ``path`` cannot be reached: a symbolic link loop, a dangling link, or nothing there."""
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symbolic link loop (following its links never reaches a file)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (following its links never reaches a file)"
        if e.errno == errno.EACCES:
            return "permission denied on a folder of the path"
    if os.path.lexists(path) and path.is_symlink():
        return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    return "no such file or folder"


def detect(path) -> Detection:
    """Pick the backend for ``path`` from its content; raise a VimscopeError that says what is wrong otherwise."""
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise SlideNotFoundError(f"{path}: {_why_missing(path)}")
    if path.is_dir():
        return _detect_folder(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyFileError(f"{path} is empty (0 bytes): a failed copy or download?")
    try:
        head = _head(path)
    except OSError as e:
        raise SlideNotFoundError(f"{path}: cannot read ({e.strerror})") from e
    if head[:4] in TIFF_MAGIC:
        return _detect_tiff(path, size)
    if head.startswith(PNG_MAGIC):
        return Detection("image", path, "png")
    if head.startswith(JPEG_MAGIC):
        vendor = _openslide_vendor(path)  # a MIRAX .mrxs starts as a JPEG preview
        return Detection("openslide", path, vendor) if vendor else Detection("image", path, "jpeg")
    if head[128:132] == b"DICM":
        return Detection("openslide", path, "dicom")
    vendor = _openslide_vendor(path)  # VMS/VMU key files and other OpenSlide formats
    if vendor:
        return Detection("openslide", path, vendor)
    suffix = path.suffix.lower()
    for magic, what in KNOWN_UNSUPPORTED:
        if head.startswith(magic):
            raise UnsupportedFormatError(f"{path} is {what}, which vimscope does not read")
    kind = "text" if _looks_like_text(head) else "data of an unknown format"
    if suffix in IMAGE_SUFFIXES:
        raise NotASlideError(f"{path} is named like a slide ({suffix}) but contains {kind}, not an image")
    raise UnsupportedFormatError(
        f"{path} contains {kind}; vimscope reads whole-slide formats (OpenSlide), TIFF, OME-Zarr, PNG and JPEG"
    )
