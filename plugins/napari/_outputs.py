"""vimscope output folders (``<stem>.ome.zarr``, NGFF 0.4) as napari layers, and class colours for labels layers.

The store says what it holds: the root ``multiscales`` is the image copy, ``labels/`` lists the class map and the
instance ids (or, written with ``--no-image-copy``, ``classes/`` and ``nuclei/`` sit at the root), and
``probabilities/`` and ``features/`` are channel stacks. Every group's level-0 ``scale``/``translation`` places it
on the slide; colours and class names come from the root's ``vimscope`` attributes (else ``image-label``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LABEL_GROUPS = ("classes", "nuclei")
CHANNEL_GROUPS = ("probabilities", "features")
# NGFF unit names -> what napari (pint) accepts; pint knows these names already, kept explicit for clarity
_NGFF_UNITS = {"micrometer": "um", "millimeter": "mm", "nanometer": "nm", "meter": "m", "kilometer": "km"}


def _attrs(folder: Path) -> dict | None:
    """The attributes of a zarr v2 (``.zattrs``) or v3 (``zarr.json``) group, None when it is not one."""
    try:
        if (folder / ".zattrs").is_file():
            return json.loads((folder / ".zattrs").read_text())
        if (folder / "zarr.json").is_file():
            meta = json.loads((folder / "zarr.json").read_text())
            attrs = meta.get("attributes", {})
            return attrs.get("ome", attrs) if isinstance(attrs, dict) else None
    except (OSError, ValueError):
        return None
    return None


def is_vimscope_output(path) -> bool:
    """A folder written by vimscope: a zarr group whose root attributes carry a ``vimscope`` record."""
    path = Path(path)
    if not path.is_dir():
        return False
    attrs = _attrs(path)
    return isinstance(attrs, dict) and isinstance(attrs.get("vimscope"), dict)


def output_name(path) -> str:
    name = Path(path).name
    for suffix in (".partial", ".zarr", ".ome"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def class_colormap(classes) -> Any:
    """A napari ``DirectLabelColormap`` with one colour per class value (0 transparent); None without classes."""
    if not classes:
        return None
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
    for value, cls in enumerate(classes):
        if isinstance(cls, dict):
            value, color = int(cls.get("value", value)), cls.get("color") or cls.get("rgba")
        else:
            color = getattr(cls, "color", None)
        if value == 0 or color is None:
            continue
        rgba = [c / 255 for c in color[:3]] + [1.0]
        colors[value] = tuple(rgba)
    return DirectLabelColormap(color_dict=colors)


def _classes_from_image_label(attrs: dict) -> list[dict]:
    label = attrs.get("image-label", {})
    names = {p.get("label-value"): p.get("class") for p in label.get("properties", [])}
    return [
        {"value": c["label-value"], "name": names.get(c["label-value"], str(c["label-value"])), "color": c["rgba"][:3]}
        for c in label.get("colors", [])
    ]


def _multiscale(group_path: Path):
    """(levels as dask arrays, axes names, level-0 scale, level-0 translation, unit) of one NGFF multiscale group."""
    import dask.array as da

    attrs = _attrs(group_path) or {}
    ms = attrs["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])]
    unit = next((a.get("unit") for a in ms.get("axes", []) if isinstance(a, dict) and a.get("unit")), None)
    levels, scale, translate = [], None, None
    for i, ds in enumerate(ms["datasets"]):
        levels.append(da.from_zarr(str(group_path / ds["path"])))
        if i == 0:
            for t in ds.get("coordinateTransformations", []):
                if t["type"] == "scale":
                    scale = list(t["scale"])
                elif t["type"] == "translation":
                    translate = list(t["translation"])
    ndim = levels[0].ndim
    axes = axes or ["c", "y", "x"][-ndim:]
    scale = scale or [1.0] * ndim
    translate = translate or [0.0] * ndim
    return levels, axes, scale, translate, _NGFF_UNITS.get(unit, unit) if unit else "pixel"


def _group_kwargs(name: str, scale, translate, unit: str, info: dict, spatial_only: bool = True) -> dict:
    sl = slice(-2, None) if spatial_only else slice(None)
    ndim = len(scale[sl])
    offset = float(info.get("frame_offset", 0.0))
    translate = [*translate[:-2], translate[-2] + offset, translate[-1] + offset]
    units = (["pixel"] * (ndim - 2)) + [unit, unit]
    return {
        "name": name,
        "multiscale": True,
        "scale": tuple(float(s) for s in scale[sl]),
        "translate": tuple(float(t) for t in translate[sl]),
        "units": tuple(units),
        "metadata": {"vimscope": info},
    }


def _store_unit(path: Path) -> str:
    """The spatial unit of the store's first multiscale group, as napari spells it ("um", "m", "pixel")."""
    listed = (_attrs(path / "labels") or {}).get("labels", [])
    for folder in (path, *(path / "labels" / n for n in listed), path / "classes"):
        ms = (_attrs(folder) or {}).get("multiscales")
        if ms:
            unit = next((a.get("unit") for a in ms[0].get("axes", []) if isinstance(a, dict) and a.get("unit")), None)
            return _NGFF_UNITS.get(unit, unit) if unit else "pixel"
    return "pixel"


def output_info(path) -> dict:
    """The store's ``vimscope`` record plus what faces need: the output path, classes and level-0 pixel size."""
    path = Path(path)
    record = (_attrs(path) or {}).get("vimscope", {})
    meta = dict(record.get("metadata") or {})
    info = {
        "output": str(path),
        "unit": _store_unit(path),
        "classes": record.get("classes") or [],
        "complete": bool(record.get("complete", False)),
        "crs": meta.get("crs"),
        "transform": meta.get("transform"),
    }
    for key in ("slide", "path", "source"):
        if isinstance(meta.get(key), str):
            info["path"] = meta[key]
            break
    for key in ("pixel_size", "mpp", "slide_mpp"):
        if isinstance(meta.get(key), (int, float)):
            info["pixel_size"] = float(meta[key])
            break
    layout = record.get("layout") or {}
    out_px, level0_per_out = layout.get("scale"), meta.get("scale")
    if "pixel_size" not in info and isinstance(out_px, (int, float)) and isinstance(level0_per_out, (int, float)):
        # a pipeline store: output pixel size / (level-0 px per output px) = the slide's level-0 pixel size
        info["pixel_size"] = float(out_px) / float(level0_per_out)
    if isinstance(out_px, (int, float)) and "pixel_size" in info:
        # the store's coordinates centre output pixel 0 on 0; on the slide its centre is (s - 1) / 2 level-0 px on
        info["frame_offset"] = (float(out_px) - info["pixel_size"]) / 2
    return info


def output_layers(path, *, include_image: bool = True) -> list:
    """LayerData for a vimscope output: image, class labels, instance labels, hidden probabilities and features."""
    register_codecs()
    path = Path(path)
    root_attrs = _attrs(path) or {}
    info = output_info(path)
    stem = output_name(path)
    layers: list = []
    if include_image and "multiscales" in root_attrs:
        levels, axes, scale, translate, unit = _multiscale(path)
        if axes[0] == "c":
            levels = [a.transpose(1, 2, 0) for a in levels]
        kwargs = _group_kwargs(stem, scale, translate, unit, info)
        kwargs["rgb"] = levels[0].shape[-1] in (3, 4) and levels[0].dtype == np.uint8
        if not kwargs["rgb"]:
            kwargs.pop("rgb")
            levels = [a[..., 0] for a in levels] if levels[0].shape[-1] == 1 else levels
        layers.append((levels, kwargs, "image"))

    label_root = path / "labels"
    listed = (_attrs(label_root) or {}).get("labels", []) if label_root.is_dir() else []
    for name in [*listed, *[n for n in LABEL_GROUPS if n not in listed]]:
        folder = label_root / name if name in listed else path / name
        attrs = _attrs(folder)
        if not attrs or "multiscales" not in attrs:
            continue
        levels, _axes, scale, translate, unit = _multiscale(folder)
        kwargs = _group_kwargs(f"{stem} {name}", scale, translate, unit, {**info, "group": name})
        classes = info["classes"] if name == "classes" else []
        classes = classes or _classes_from_image_label(attrs)
        colormap = class_colormap(classes) if name != "nuclei" else None
        if colormap is not None:
            kwargs["colormap"] = colormap
        kwargs["opacity"] = 0.5
        layers.append(labels_data(levels, kwargs))

    for name in CHANNEL_GROUPS:
        folder = path / name
        attrs = _attrs(folder)
        if not attrs or "multiscales" not in attrs:
            continue
        levels, axes, scale, translate, unit = _multiscale(folder)
        if levels[0].dtype == np.float16:
            levels = [a.astype(np.float32) for a in levels]
        kwargs = _group_kwargs(f"{stem} {name}", scale, translate, unit, {**info, "group": name}, spatial_only=False)
        kwargs["visible"] = False
        kwargs["axis_labels"] = ("class" if name == "probabilities" else "feature", "y", "x")
        if name == "probabilities":
            kwargs["contrast_limits"] = (0, 255)
        layers.append((levels, kwargs, "image"))
    return layers


def labels_data(levels: list, kwargs: dict) -> tuple:
    """A labels LayerData; napari 0.9 rejects a one-level multiscale labels list, so one level goes in plain."""
    if len(levels) == 1:
        return levels[0], {**kwargs, "multiscale": False}, "labels"
    return levels, kwargs, "labels"


def register_codecs() -> None:
    """An image copy written with the JPEG opt-in (or by vimscope versions that wrote JPEG by default) needs
    imagecodecs' codec in numcodecs before dask opens the arrays; Blosc-coded stores need nothing."""
    from vimscope.io import register_jpeg_codec

    register_jpeg_codec()
