"""``preview.png``: the slide thumbnail with the class map blended over it and a legend, for a glance."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vimscope.writers.atomic import atomic_write_bytes


def _name_color(cls) -> tuple[str, tuple[int, int, int]]:
    if isinstance(cls, dict):
        return str(cls["name"]), tuple(int(c) for c in cls.get("color", (255, 0, 0)))
    return str(cls.name), tuple(int(c) for c in cls.color)


def overlay(thumbnail_rgb: np.ndarray, class_map: np.ndarray, classes: Sequence, alpha: float = 0.45) -> np.ndarray:
    """Blend class colours over the thumbnail (class 0, the background, stays clear); sizes may differ."""
    from PIL import Image

    thumb = np.asarray(thumbnail_rgb)[..., :3].astype(np.uint8)
    h, w = thumb.shape[:2]
    cmap = np.asarray(class_map)
    if cmap.shape != (h, w):
        cmap = np.asarray(Image.fromarray(cmap.astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST))
    lut = np.zeros((256, 3), np.float32)
    for value, cls in enumerate(classes[:256]):
        lut[value] = _name_color(cls)[1]
    mask = (cmap > 0) & (cmap < len(classes))
    out = thumb.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * lut[cmap[mask]]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_preview(
    thumbnail_rgb: np.ndarray,
    class_map: np.ndarray,
    classes: Sequence,
    *,
    alpha: float = 0.45,
    max_size: int = 1024,
    title: str | None = None,
    shares: Mapping[str, float] | None = None,
):
    """The preview as a PIL image: thumbnail (longest side <= ``max_size``), overlay, and a legend column.

    ``shares`` (class name -> fraction of the labelled pixels, 0-1): what the legend prints; a run passes its
    summary's full-resolution fractions, so legend, summary and report agree. Without it the legend counts the
    (coarser) class map given here."""
    from PIL import Image, ImageDraw, ImageFont

    thumb = Image.fromarray(np.asarray(thumbnail_rgb)[..., :3].astype(np.uint8))
    if max(thumb.size) > max_size:
        thumb.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    blended = Image.fromarray(overlay(np.asarray(thumb), class_map, classes, alpha))
    cmap = np.asarray(class_map)
    counts = np.bincount(cmap.ravel().astype(np.int64), minlength=len(classes))[: len(classes)]
    shown = [(i, *_name_color(c)) for i, c in enumerate(classes) if i > 0]
    font = ImageFont.load_default()
    line, pad = 18, 10
    legend_w = 220
    height = max(blended.height, pad * 2 + line * (len(shown) + (2 if title else 0)))
    canvas = Image.new("RGB", (blended.width + legend_w, height), (255, 255, 255))
    canvas.paste(blended, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = blended.width + pad, pad
    if title:
        draw.text((x, y), title[:32], fill=(0, 0, 0), font=font)
        y += 2 * line
    total = max(1, int(counts.sum()))
    for value, name, color in shown:
        draw.rectangle([x, y + 2, x + 14, y + 14], fill=color, outline=(0, 0, 0))
        share = 100.0 * (shares[name] if shares is not None and name in shares else counts[value] / total)
        draw.text((x + 20, y + 2), f"{name[:22]}  {share:.1f}%", fill=(0, 0, 0), font=font)
        y += line
    return canvas


def write_preview(
    path: str | os.PathLike,
    thumbnail_rgb: np.ndarray,
    class_map: np.ndarray,
    classes: Sequence,
    *,
    alpha: float = 0.45,
    max_size: int = 1024,
    title: str | None = None,
    shares: Mapping[str, float] | None = None,
) -> Path:
    """Render and write ``preview.png`` atomically; returns its path."""
    image = render_preview(
        thumbnail_rgb, class_map, classes, alpha=alpha, max_size=max_size, title=title, shares=shares
    )
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return atomic_write_bytes(path, buf.getvalue())
