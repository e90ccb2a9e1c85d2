"""Small readers for labelled images and masks: TIFF through tifffile, everything else through Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")


def read_array(path: str | Path) -> np.ndarray:
    """The pixels of an image file in their native dtype: (h, w) or (h, w, c)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.series[0]
                arr = page.asarray()
                axes = page.axes
            # planar multi-channel (CYX / SYX) to (y, x, c)
            if arr.ndim == 3 and axes[0] in "CS" and axes[1:] == "YX":
                arr = np.moveaxis(arr, 0, -1)
            return arr
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            return np.asarray(im)
    except FileNotFoundError:
        raise ConfigError(f"image not found: {path}") from None
    except Exception as e:  # decoders raise many types for broken files
        raise ConfigError(f"cannot read image {path}: {e}") from None


def read_rgb_or_bands(path: str | Path) -> np.ndarray:
    """An image for training: (h, w, c); 8-bit RGBA loses its alpha (slide exports store none that matters)."""
    arr = read_array(path)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return np.ascontiguousarray(arr)
