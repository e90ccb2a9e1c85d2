"""PNG and JPEG through Pillow, for small images (tiles, crops, exported figures).

The whole image is decoded once, on the first read, and shared by all threads (it is read-only).
Pillow does not report libjpeg's corrupt-data warnings either, so a JPEG is checked with ``io.jpeg.check`` first;
a truncated file (no PNG IEND chunk / no JPEG EOI marker at its end) is refused at open.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from vimscope.errors import CorruptSlideError, DamagedTileError, DecodeLimitError, UnsupportedFormatError
from vimscope.io.base import SlideReader
from vimscope.io.meta import SlideMeta
from vimscope.io.tiffmeta import PLACEHOLDER_DPI
from vimscope.types import Box

# Pillow mode -> (bands, dtype, alpha band, mode to convert to first)
MODES = {
    "1": (1, "uint8", None, "L"),
    "L": (1, "uint8", None, None),
    "LA": (2, "uint8", 1, None),
    "P": (3, "uint8", None, "RGB"),
    "PA": (4, "uint8", 3, "RGBA"),
    "RGB": (3, "uint8", None, None),
    "RGBA": (4, "uint8", 3, None),
    "CMYK": (3, "uint8", None, "RGB"),
    "YCbCr": (3, "uint8", None, "RGB"),
    "I;16": (1, "uint16", None, None),
    "I;16B": (1, "uint16", None, None),
    "I": (1, "int32", None, None),
    "F": (1, "float32", None, None),
}


def _pillow_bomb(path: Path, error: Exception) -> DecodeLimitError:
    """Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, twice over) as a one-line refusal: it stays
    in force (it is Pillow's global) for an image under our limit but over Pillow's (~179 Mpx)."""
    from PIL import Image

    return DecodeLimitError(
        f"{path}: {str(error).split(',')[0]} (Pillow refuses more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels): "
        "a decompression bomb, or an image to convert to a tiled TIFF"
    )


def _truncated(path: Path, kind: str) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    if kind == "png":
        return b"IEND" not in tail[-32:]
    return b"\xff\xd9" not in tail


class ImageReader(SlideReader):
    backend = "image"

    def __init__(self, path, *, mpp=None, source=None, **options):
        self._pixels: np.ndarray | None = None
        self._pixels_lock = threading.Lock()
        super().__init__(path, mpp=mpp, source=source, **options)

    def _open(self):
        return None  # pixels are shared; nothing per thread

    def _check_header(self, path: Path) -> None:
        """Our decode limit from the PNG/JPEG header itself, before Pillow parses anything (at one byte per pixel,
        the least any mode takes: the exact check follows once Pillow has read the mode)."""
        from vimscope.io.jpeg.frames import HEAD_BYTES, JPEG, PNG, claimed_size

        with open(path, "rb") as fh:
            head = fh.read(max(HEAD_BYTES, 64 << 10))
        size = claimed_size(head, PNG) or claimed_size(head, JPEG)
        if size:
            kind = "PNG" if head.startswith(b"\x89PNG") else "JPEG"
            self._check_decoded(f"the {kind} image", (size[1], size[0], 1), 1)

    def _read_meta(self, handle) -> SlideMeta:
        from PIL import Image

        path = Path(self.source)
        self._check_header(path)
        try:
            with Image.open(path) as img:
                kind = (img.format or "").lower()
                mode, size, info = img.mode, img.size, dict(img.info)
        except Image.DecompressionBombError as e:
            raise _pillow_bomb(path, e) from None
        except (OSError, ValueError) as e:  # Pillow's ValueError: e.g. a text chunk that decompresses too far
            if "too large" in str(e).lower():
                raise DecodeLimitError(f"{path}: {e} (Pillow's limit): a decompression bomb") from None
            raise CorruptSlideError(f"{path}: cannot be read as an image ({e})") from e
        if kind not in ("png", "jpeg"):
            raise UnsupportedFormatError(f"{path}: {kind or 'unknown'} images are not supported")
        if _truncated(path, kind):
            raise CorruptSlideError(f"{path}: file is truncated (its {kind.upper()} end marker is missing)")
        if mode not in MODES:
            raise UnsupportedFormatError(f"{path}: Pillow image mode {mode!r} is not supported")
        bands, dtype, alpha, self._convert = MODES[mode]
        self._check_decoded(f"the {kind.upper()} image", (size[1], size[0], bands), np.dtype(dtype).itemsize)
        self._kind = kind
        mpp = None
        dpi = info.get("dpi")
        if dpi and float(dpi[0]) > PLACEHOLDER_DPI:
            mpp = 25400.0 / float(dpi[0])
        w, h = size
        return SlideMeta(
            path=self.path,
            backend=self.backend,
            vendor=kind,
            level_dimensions=[(w, h)],
            level_downsamples=[1.0],
            mpp=mpp,
            bands=bands,
            dtype=dtype,
            has_alpha=alpha is not None,
            alpha_band=alpha,
            is_rgb=dtype == "uint8" and bands >= 3,
            rgb_bands=[0, 1, 2] if bands >= 3 else [0],
            tile_size=(w, h),
            file_size=path.stat().st_size,
        )

    def _decode(self) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels
        with self._pixels_lock:
            if self._pixels is None:
                from PIL import Image

                path = Path(self.source)
                whole = Box(0, 0, *self.meta.dimensions)
                if self._kind == "jpeg":
                    from vimscope.io.jpeg.check import check_jpeg

                    problem = check_jpeg(path.read_bytes())
                    if problem:
                        raise DamagedTileError(f"{path}: {problem}", whole, 0, reason=problem)
                try:
                    with Image.open(path) as img:
                        img.load()
                        if self._convert:
                            img = img.convert(self._convert)
                        data = np.asarray(img)
                except Image.DecompressionBombError as e:
                    raise _pillow_bomb(path, e) from None
                except (OSError, ValueError) as e:
                    raise DamagedTileError(f"{path}: damaged image data ({e})", whole, 0, reason=str(e)) from e
                if data.ndim == 2:
                    data = data[..., None]
                data = data.astype(self.meta.dtype, copy=False)
                data.setflags(write=False)
                self._pixels = data
        return self._pixels

    def _read_level(self, handle, box: Box, level: int, bands: list[int]) -> np.ndarray:
        return np.ascontiguousarray(self._decode()[box.y : box.y1, box.x : box.x1][..., bands])
