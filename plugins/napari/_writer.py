"""napari writers: a labels layer as OME-Zarr labels; labels or shapes as GeoJSON in the pipeline's conventions.

GeoJSON follows ``vimscope.writers.geojson`` (QuPath's) as the pipeline writes and reads it: vertices in continuous
level-0 pixel coordinates of the slide, pixel (r, c) covering [c, c+1) x [r, r+1) (georeferenced rasters too, so a
shape drawn here is a valid ``--roi``; areas are then in map units), ``objectType``, ``classification {name, color}``
and ``measurements``. A layer's world coordinates are mapped back to level 0
with the slide's pixel size from ``metadata["vimscope"]`` (or the vimscope slide open in the viewer).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from vimscope.errors import OutputError
from vimscope.types import Box

MAX_GEOJSON_PIXELS = 200_000_000  # polygonising more at once is a job for `vimscope segment --outputs geojson`
CHUNK = 512
NGFF_UNITS = {"micrometer", "millimeter", "nanometer", "meter", "kilometer", "centimeter", "foot", "inch"}


# ---- where the layer sits on the slide ------------------------------------------------------------------------------
def _viewer_slide_info() -> dict:
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:
        return {}
    if viewer is None:
        return {}
    for layer in viewer.layers:
        info = layer.metadata.get("vimscope") if isinstance(layer.metadata, dict) else None
        if isinstance(info, dict) and info.get("pixel_size"):
            return info
    return {}


def reference(meta: dict) -> dict:
    """pixel_size (level-0, world units), transform, crs, classes for a layer's state; falls back to the layer's
    own pixels (its data pixels are then the level-0 pixels)."""
    info = dict((meta.get("metadata") or {}).get("vimscope") or {})
    if not info.get("pixel_size"):
        info = {**_viewer_slide_info(), **{k: v for k, v in info.items() if v is not None}}
    if not info.get("pixel_size"):
        info["pixel_size"] = float(np.asarray(meta.get("scale", [1.0]), float)[-1])
    return info


def _unit(meta: dict, info: dict) -> str:
    units = meta.get("units")
    unit = str(units[-1]) if units else str(info.get("unit") or "pixel")
    return {"um": "micrometer", "µm": "micrometer", "m": "meter"}.get(unit, unit)


def _level0(data):
    """Level 0 of a (multiscale) labels layer as a 2-D array-like (leading singleton axes dropped)."""
    if isinstance(data, (list, tuple)) or type(data).__name__ == "MultiScaleData":
        data = data[0]
    while data.ndim > 2:
        if data.shape[0] != 1:
            raise OutputError("vimscope writes 2-D labels only; this layer has more axes with more than one plane")
        data = data[0]
    return data


def _label_dtype(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind == "b" or dtype.itemsize == 1:
        return "uint8"
    return "uint16" if dtype.itemsize == 2 else "uint32"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "labels"


def _classes(meta: dict, info: dict, values) -> list[dict]:
    """(value, name, colour) of each label value: the run's classes, else the layer's colormap."""
    known = {int(c.get("value", i)): c for i, c in enumerate(info.get("classes") or [])}
    values = [int(v) for v in values]
    colors = np.tile([1.0, 0.0, 0.0], (len(values), 1))
    colormap = meta.get("colormap")
    if colormap is not None and hasattr(colormap, "map") and values:
        colors = np.asarray(colormap.map(np.asarray(values)), float).reshape(len(values), -1)[:, :3]
    out = []
    for v, rgb in zip(values, colors):
        if v in known:
            c = known[v]
            out.append({"value": v, "name": str(c["name"]), "color": [int(x) for x in c["color"][:3]]})
        else:
            color = [int(round(255 * x)) for x in rgb]
            out.append({"value": v, "name": f"{meta.get('name', 'labels')} {v}", "color": color})
    return out


# ---- OME-Zarr labels -----------------------------------------------------------------------------------------------
def write_labels_zarr(path: str, data, meta: dict) -> list[str]:
    """Write a labels layer as NGFF 0.4 labels (``labels/<name>``, 2x mode pyramid, colours) in a zarr v2 store."""
    import zarr

    from vimscope.writers import ngff
    from vimscope.writers.atomic import commit_path, output_errors, partial_path, remove_tree
    from vimscope.writers.pyramid import build_region, default_levels, downsample_mode, level_shapes

    final = Path(path)
    if not final.name.endswith(".zarr"):
        final = final.with_name(final.name + ".ome.zarr")
    partial = partial_path(final)
    level0 = _level0(data)
    shape = tuple(int(s) for s in level0.shape)
    dtype = _label_dtype(level0.dtype)
    info = reference(meta)
    name = _safe_name(str(meta.get("name", "labels")))
    shapes = level_shapes(shape, default_levels(shape, CHUNK))
    scale = [float(s) for s in np.asarray(meta.get("scale", [1.0, 1.0]), float)[-2:]]
    translate = [float(t) for t in np.asarray(meta.get("translate", [0.0, 0.0]), float)[-2:]]
    unit = _unit(meta, info)

    with output_errors(final, partial):
        if partial.exists():
            remove_tree(partial)
        root = zarr.open_group(str(partial), mode="w", zarr_format=2)
        arrays = [
            root.create_array(
                f"labels/{name}/{i}",
                shape=s,
                chunks=(CHUNK, CHUNK),
                dtype=dtype,
                fill_value=0,
                chunk_key_encoding={"name": "v2", "separator": "/"},
            )
            for i, s in enumerate(shapes)
        ]
        values: set[int] = set()
        rows = CHUNK * max(1, (64 << 20) // max(1, shape[1] * CHUNK * 4))
        for y in range(0, shape[0], rows):
            block = np.asarray(level0[y : y + rows]).astype(dtype, copy=False)
            arrays[0][y : y + block.shape[0]] = block
            values.update(np.unique(block).tolist())

        def read(level, b: Box):
            return arrays[level][b.y : b.y1, b.x : b.x1]

        def write(level, b: Box, block):
            arrays[level][b.y : b.y1, b.x : b.x1] = block

        build_region(read, write, downsample_mode, shapes, CHUNK, None, bytes_per_px=4)
        classes = _classes(meta, info, sorted(values | {0})) if len(values) <= 256 else []
        multiscales = ngff.multiscales(
            name, len(shapes), scale[-1], channel=False, unit=unit if unit in NGFF_UNITS else None, downscale="mode"
        )
        for ds, level in zip(multiscales[0]["datasets"], range(len(shapes))):
            f = 2**level
            ds["coordinateTransformations"] = [
                {"type": "scale", "scale": [scale[0] * f, scale[1] * f]},
                {
                    "type": "translation",
                    "translation": [translate[0] + scale[0] * (f - 1) / 2, translate[1] + scale[1] * (f - 1) / 2],
                },
            ]
        group = zarr.open_group(store=root.store, path=f"labels/{name}", mode="a", zarr_format=2)
        label_attrs = {"multiscales": multiscales}
        if classes:
            label_attrs["image-label"] = ngff.image_label(
                [{"name": c["name"], "color": c["color"]} for c in _dense(classes)], source=None
            )
        group.attrs.update(label_attrs)
        zarr.open_group(store=root.store, path="labels", mode="a", zarr_format=2).attrs.update({"labels": [name]})
        record = {k: info.get(k) for k in ("path", "pixel_size", "unit", "crs", "transform") if info.get(k)}
        root.attrs.update(
            {
                "vimscope": {
                    "complete": True,
                    "classes": classes,
                    "metadata": {**record, "written_by": "vimscope napari writer", "layer": meta.get("name")},
                }
            }
        )
    commit_path(partial, final, overwrite=True)
    return [str(final)]


def _dense(classes: list[dict]) -> list[dict]:
    """One entry per value 0..max (``image-label`` numbers classes by their index)."""
    by_value = {c["value"]: c for c in classes}
    top = max(by_value) if by_value else 0
    return [by_value.get(v, {"name": str(v), "color": [0, 0, 0]}) for v in range(top + 1)]


# ---- GeoJSON --------------------------------------------------------------------------------------------------------
def _geojson_writer(path: str, info: dict):
    from vimscope.writers.geojson import GeoJSONWriter

    gz = str(path).endswith(".gz")
    return GeoJSONWriter(path, gzip=gz, overwrite=True)


def _area_measurements(geom, info: dict) -> dict:
    from vimscope.writers.geojson import area_measurements

    unit = info.get("unit") or "pixel"
    pixel = info.get("pixel_size") if unit != "pixel" else None
    return area_measurements(geom.area, pixel, "µm" if unit in ("um", "micrometer") else unit)


def write_labels_geojson(path: str, data, meta: dict) -> list[str]:
    """Polygons of a labels layer: class regions as annotations (instance maps as detections, one per id)."""
    import shapely

    from vimscope.writers.geojson import qupath_feature
    from vimscope.writers.polygons import instance_polygons, label_polygons

    level0 = _level0(data)
    if math.prod(level0.shape) > MAX_GEOJSON_PIXELS:
        raise OutputError(
            f"labels layer {meta.get('name')!r} is too large to polygonise here ({level0.shape[1]} x "
            f"{level0.shape[0]} px); run `vimscope segment --outputs geojson` instead"
        )
    labels = np.asarray(level0)
    info = reference(meta)
    p = float(info["pixel_size"])
    sy, sx = (float(s) for s in np.asarray(meta.get("scale", [1.0, 1.0]), float)[-2:])
    ty, tx = (float(t) for t in np.asarray(meta.get("translate", [0.0, 0.0]), float)[-2:])
    # array pixel-edge x (col c's left edge is c) -> world (x - 0.5) * s + t -> level-0 edge world / p + 0.5
    to_level0 = np.array([sx / p, sy / p]), np.array([(tx - 0.5 * sx) / p + 0.5, (ty - 0.5 * sy) / p + 0.5])

    values = np.unique(labels)
    classes = {c["value"]: c for c in _classes(meta, info, values)}
    instances = not info.get("classes") or info.get("group") == "nuclei"
    pieces = instance_polygons(labels) if instances else label_polygons(labels)
    with _geojson_writer(path, info) as writer:
        for value, geom in pieces:
            geom = shapely.transform(geom, lambda xy: xy * to_level0[0] + to_level0[1])
            c = classes[value]
            measurements = _area_measurements(geom, info)
            if instances:
                measurements = {"Label": int(value), **measurements}
            writer.add(
                qupath_feature(
                    geom,
                    object_type="detection" if instances else "annotation",
                    name=c["name"],
                    color=c["color"],
                    measurements=measurements,
                )
            )
    return [str(writer.final_path)]


def _shape_class(meta: dict, index: int) -> tuple[str, list[int]]:
    features = meta.get("features")
    name = str(meta.get("name", "annotation"))
    if features is not None and len(features) > index:
        for column in ("class", "classification", "name", "label"):
            if column in features.columns:
                name = str(features[column].iloc[index])
                break
    color = [255, 255, 0]
    for key in ("edge_color", "face_color"):
        colors = np.asarray(meta.get(key, []), float)
        if colors.ndim == 2 and len(colors) > index and colors[index][3] > 0:
            color = [int(round(255 * c)) for c in colors[index][:3]]
            break
    return name, color


def write_shapes_geojson(path: str, data, meta: dict) -> list[str]:
    """Each shape as a QuPath annotation (polygon; rectangles and ellipses outlined, lines and paths 1 px wide)."""
    from vimscope_napari._geometry import shapes_geometries

    from vimscope.writers.geojson import qupath_feature

    info = reference(meta)
    geoms = shapes_geometries(
        data, meta.get("shape_type", ["polygon"] * len(data)), meta["scale"], meta["translate"], info["pixel_size"]
    )
    with _geojson_writer(path, info) as writer:
        for index, geom in geoms:
            name, color = _shape_class(meta, index)
            writer.add(
                qupath_feature(
                    geom,
                    object_type="annotation",
                    name=name,
                    color=color,
                    measurements=_area_measurements(geom, info),
                )
            )
    return [str(writer.final_path)]
