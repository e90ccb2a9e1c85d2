"""Resizing an (h, w, c) image for overviews and masks: Pillow for 8-bit, scikit-image for other dtypes."""

from __future__ import annotations

import numpy as np


def resize_image(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (h, w, c) to (width, height): area averaging when shrinking, bilinear when growing."""
    w, h = size
    if data.dtype == np.uint8 and data.shape[2] in (1, 3, 4):
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(data[..., 0] if data.shape[2] == 1 else data))
        shrinking = w < data.shape[1] and h < data.shape[0]
        out = np.asarray(img.resize((w, h), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR))
        return out.reshape(h, w, data.shape[2])
    from skimage.transform import resize

    shrinking = w < data.shape[1] or h < data.shape[0]
    out = resize(data, (h, w, data.shape[2]), order=1, preserve_range=True, anti_aliasing=shrinking)
    if data.dtype.kind in "ui":
        info = np.iinfo(data.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(data.dtype)
