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
    scale: float | Sequence[float],
    *,
    channel: bool,
    unit: str | None,
    stride: int = 1,
    metadata: dict | None = None,
    downscale: str = "mean",
    origin: Sequence[float] = (0.0, 0.0),
) -> list[dict]:
    """The ``multiscales`` list of an image or label group with ``levels`` 2x levels of base pixel ``scale``
    (one number, or (y, x)); ``origin``: where the centre of level-0 element (0, 0) sits, (y, x)."""
    try:
        sy, sx = (float(s) for s in scale)
    except TypeError:  # one number
        sy = sx = float(scale)
    oy, ox = (float(o) for o in origin)
    lead_scale, lead_shift = ([1.0], [0.0]) if channel else ([], [])
    datasets = []
    for level in range(levels):
        f = stride * 2**level
        shift = [oy + sy * (f - 1) / 2, ox + sx * (f - 1) / 2]
        transforms = [{"type": "scale", "scale": lead_scale + [sy * f, sx * f]}]
        if any(shift):
            transforms.append({"type": "translation", "translation": lead_shift + shift})
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
        name, color = class_name_color(cls)
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


def class_name_color(cls) -> tuple[str, list[int]]:
    """(name, rgb) of a class given as a ``ClassSpec``-like object or a ``{"name", "color"}`` dict."""
    if isinstance(cls, dict):
        return str(cls["name"]), list(cls.get("color", [255, 0, 0]))
    return str(cls.name), list(cls.color)
