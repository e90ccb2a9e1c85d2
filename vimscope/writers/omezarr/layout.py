"""What a run's store holds: its array families (image, label maps, probabilities, features), their levels, chunks
and codecs, the record a resumed run compares, and the NGFF attributes of each group.

Kept apart from the writer so that the layout is plain data: the same settings give the same record, and a
resumed run whose record differs starts over instead of mixing two runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from vimscope.writers.omezarr import ngff
from vimscope.writers.omezarr.codecs import image_codec, label_codec, scratch_codec
from vimscope.writers.pyramid import default_levels, level_shapes

FORMAT_VERSION = 2  # 2: the image copy is Blosc-coded unless JPEG is asked for


@dataclass
class ArrayFamily:
    """One multiscale array family inside the store."""

    name: str
    path: str  # inside the store, "" for the root
    dtype: str
    channels: int | None  # None: a (y, x) label map
    stride: int  # output pixels per element of level 0
    chunk: int  # spatial chunk in elements
    shapes: list[tuple[int, int]]  # (h, w) per level
    is_label: bool
    compressor: object

    def level_shape(self, level: int) -> tuple[int, ...]:
        h, w = self.shapes[level]
        return (h, w) if self.channels is None else (self.channels, h, w)

    def chunks(self) -> tuple[int, ...]:
        c = self.chunk
        if self.channels is None:
            return (c, c)
        # a JPEG image copy is coded plane by plane; other channel stacks keep a pixel's vector in one chunk
        planes = 1 if self.compressor.get_config().get("id") == "imagecodecs_jpeg" else self.channels
        return (planes, c, c)

    def array_path(self, level: int) -> str:
        return f"{self.path}/{level}" if self.path else str(level)


def plan_families(
    out_shape: tuple[int, int],
    levels: int,
    chunk: int,
    *,
    image: bool,
    image_channels: int | None,
    probabilities: int | None,
    features: int | None,
    scratch_probabilities: bool = False,
    feature_stride: int,
    instances: bool,
    codec: str,
    quality: int,
) -> dict[str, ArrayFamily]:
    """The families of a store, by name: with ``image`` the labels live under ``labels/`` of the image group,
    without it each map is a standalone multiscale image at the root."""
    lossless = label_codec()
    shapes = level_shapes(out_shape, levels)
    label_root = "labels/" if image else ""
    families = {}
    if image and image_channels:
        comp = image_codec(codec, quality)
        families["image"] = ArrayFamily("image", "", "uint8", image_channels, 1, chunk, shapes, False, comp)
    for name, dtype, wanted in (("classes", "uint8", True), ("nuclei", "uint32", instances)):
        if wanted:
            families[name] = ArrayFamily(name, label_root + name, dtype, None, 1, chunk, shapes, True, lossless)
    if probabilities:  # scratch: read back by the instance step, then dropped: no pyramid, the fastest codec
        pshapes, pcodec = (shapes[:1], scratch_codec()) if scratch_probabilities else (shapes, lossless)
        families["probabilities"] = ArrayFamily(
            "probabilities", "probabilities", "uint8", int(probabilities), 1, chunk, pshapes, False, pcodec
        )
    if features:
        grid = (math.ceil(out_shape[0] / feature_stride), math.ceil(out_shape[1] / feature_stride))
        fchunk = chunk // feature_stride
        flevels = min(levels, default_levels(grid, fchunk))
        families["features"] = ArrayFamily(
            "features",
            "features",
            "float16",
            int(features),
            feature_stride,
            fchunk,
            level_shapes(grid, flevels),
            False,
            lossless,
        )
    return families


def layout_record(out_shape, scale: float, chunk: int, levels: int, families: dict[str, ArrayFamily]) -> dict:
    """What a resumed run must match (JSON-normalised, as it reads back from the store)."""
    record = {
        "format": FORMAT_VERSION,
        "out_shape": list(out_shape),
        "scale": scale,
        "chunk": chunk,
        "levels": levels,
        "groups": {
            n: {
                "path": f.path,
                "dtype": f.dtype,
                "channels": f.channels,
                "stride": f.stride,
                "shapes": f.shapes,
                "codec": f.compressor.get_config(),
            }
            for n, f in families.items()
        },
    }
    return json.loads(json.dumps(record))


def saved_layout(store: Path) -> dict | None:
    """The layout record of a store a run started (None when there is none or it does not read)."""
    attrs = store / ".zattrs"
    if not attrs.is_file():
        return None
    try:
        return json.loads(attrs.read_text()).get("vimscope", {}).get("layout")
    except (OSError, ValueError, AttributeError):
        return None


def create_arrays(store: Path, families: dict[str, ArrayFamily]):
    """A fresh Zarr v2 group at ``store`` with every level of every family (chunk keys ``y/x``), returned."""
    import zarr

    root = zarr.open_group(str(store), mode="w", zarr_format=2)
    for f in families.values():
        for level in range(len(f.shapes)):
            root.create_array(
                f.array_path(level),
                shape=f.level_shape(level),
                chunks=f.chunks(),
                dtype=f.dtype,
                compressors=f.compressor,
                fill_value=0,
                chunk_key_encoding={"name": "v2", "separator": "/"},
            )
    return root


def group_attrs(
    families: dict[str, ArrayFamily],
    *,
    store_name: str,
    scale: float,
    unit: str | None,
    classes: list,
    probability_names: list[str] | None,
    metadata: dict,
    vimscope: dict,
) -> dict[str, dict]:
    """The NGFF attributes of every group, by path in the store ("" the root); ``vimscope`` (layout, classes,
    completeness) goes on the root."""
    image = "image" in families
    out: dict[str, dict] = {"": {"vimscope": vimscope}}
    for name, f in families.items():
        if name == "image":
            attrs = {"multiscales": ngff.multiscales(store_name, len(f.shapes), scale, channel=True, unit=unit)}
            rgb = f.channels == 3
            names = ["red", "green", "blue"] if rgb else [f"band {i}" for i in range(f.channels)]
            attrs["omero"] = ngff.omero(names, ["FF0000", "00FF00", "0000FF"] if rgb else ["FFFFFF"] * f.channels)
        elif f.is_label:
            ms = ngff.multiscales(name, len(f.shapes), scale, channel=False, unit=unit, downscale="mode")
            source = "../../" if image else None
            if name == "classes":
                label = ngff.image_label(classes, source=source)
            else:
                label = {"version": ngff.NGFF_VERSION, **({"source": {"image": source}} if source else {})}
            attrs = {"multiscales": ms, "image-label": label}
        else:
            meta = {"vimscope": metadata} if name == "features" else {}
            attrs = {
                "multiscales": ngff.multiscales(
                    name, len(f.shapes), scale, channel=True, unit=unit, stride=f.stride, metadata=meta
                )
            }
            if name == "probabilities" and probability_names:
                attrs["channel_names"] = list(probability_names)
        out.setdefault(f.path, {}).update(attrs)
    labels = [n for n in ("classes", "nuclei") if n in families]
    if image and labels:
        out["labels"] = {"labels": labels}
    return out


def write_attrs(root, attrs_by_path: dict[str, dict]) -> None:
    """Merge each group's attributes into the store ``root`` (an open zarr group)."""
    import zarr

    for path, attrs in attrs_by_path.items():
        group = root if path == "" else zarr.open_group(store=root.store, path=path, mode="a", zarr_format=2)
        group.attrs.update(attrs)
