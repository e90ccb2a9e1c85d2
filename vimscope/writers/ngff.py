"""OME-NGFF 0.4 metadata: multiscales with per-level scale and translation, image-label colours, omero channels.

Coordinates follow the NGFF convention that the centre of array element i sits at ``i * scale + translation``.
A level built by 2**l x 2**l averaging therefore has scale ``s * 2**l`` and translation ``s * (2**l - 1) / 2``;
a token grid of stride k has scale ``s * k`` and translation ``s * (k - 1) / 2``. Every group written with the
same base scale lines up with the image, level by level.
"""

from __future__ import annotations

from collections.abc import Sequence

NGFF_VERSION = "0.4"
SPACE_UNITS = {"micrometer", "millimeter", "nanometer", "meter", "kilometer", "centimeter", "foot", "inch"}


def axes(channel: bool, unit: str | None) -> list[dict]:
    space = [{"name": n, "type": "space"} for n in ("y", "x")]
    if unit in SPACE_UNITS:
        for a in space:
            a["unit"] = unit
    return ([{"name": "c", "type": "channel"}] if channel else []) + space


def multiscales(
    name: str,
    levels: int,
    scale: float,
    *,
    channel: bool,
    unit: str | None,
    stride: int = 1,
    metadata: dict | None = None,
    downscale: str = "mean",
) -> list[dict]:
    """The ``multiscales`` list of an image or label group with ``levels`` 2x levels of base pixel ``scale``."""
    datasets = []
    for level in range(levels):
        f = stride * 2**level
        s, t = scale * f, scale * (f - 1) / 2
        transforms = [{"type": "scale", "scale": ([1.0] if channel else []) + [s, s]}]
        if t:
            transforms.append({"type": "translation", "translation": ([0.0] if channel else []) + [t, t]})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    entry = {
        "version": NGFF_VERSION,
        "name": name,
        "axes": axes(channel, unit),
        "datasets": datasets,
        "type": downscale,
        "metadata": {"method": f"vimscope 2x2 {downscale}", **(metadata or {})},
    }
    return [entry]


def image_label(classes: Sequence, source: str | None = "../../", names_key: str = "class") -> dict:
    """``image-label`` with one colour and one name per class value (value = index in ``classes``)."""
    colors, properties = [], []
    for value, cls in enumerate(classes):
        name, color = _name_color(cls)
        alpha = 0 if value == 0 else 255
        colors.append({"label-value": value, "rgba": [int(c) for c in color] + [alpha]})
        properties.append({"label-value": value, names_key: name})
    meta = {"version": NGFF_VERSION, "colors": colors, "properties": properties}
    if source is not None:
        meta["source"] = {"image": source}
    return meta


def omero(channel_names: Sequence[str], colors: Sequence[str], window: tuple[float, float] = (0, 255)) -> dict:
    """``omero`` rendering settings, so viewers show an RGB copy in colour rather than as grey planes."""
    lo, hi = window
    channels = [
        {
            "label": n,
            "color": c,
            "active": True,
            "coefficient": 1,
            "family": "linear",
            "inverted": False,
            "window": {"start": lo, "end": hi, "min": lo, "max": hi},
        }
        for n, c in zip(channel_names, colors)
    ]
    return {
        "version": NGFF_VERSION,
        "rdefs": {"model": "color" if len(channels) == 3 else "greyscale"},
        "channels": channels,
    }


def _name_color(cls) -> tuple[str, list[int]]:
    if isinstance(cls, dict):
        return str(cls["name"]), list(cls.get("color", [255, 0, 0]))
    return str(cls.name), list(cls.color)
