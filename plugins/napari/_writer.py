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

MAX_GEOJSON_PIXELS = 200_000_000  # polygonising more at once is a job for `vimscope segment --outputs geojson`
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
    """Write a labels layer as NGFF 0.4 labels (``labels/<name>``, 2x mode pyramid, colours) with vimscope's
    labels writer; the layer's scale, translation and unit place it, the run's classes (or its colormap) name it."""
    from vimscope.writers import write_labels

    final = Path(path)
    if not final.name.endswith(".zarr"):
        final = final.with_name(final.name + ".ome.zarr")
    info = reference(meta)
    unit = _unit(meta, info)
    record = {k: info.get(k) for k in ("path", "pixel_size", "unit", "crs", "transform") if info.get(k)}
    written = write_labels(
        final,
        _level0(data),
        name=_safe_name(str(meta.get("name", "labels"))),
        scale=[float(s) for s in np.asarray(meta.get("scale", [1.0, 1.0]), float)[-2:]],
        origin=[float(t) for t in np.asarray(meta.get("translate", [0.0, 0.0]), float)[-2:]],
        unit=unit if unit in NGFF_UNITS else None,
        classes=lambda values: _classes(meta, info, values),
        metadata={**record, "written_by": "vimscope napari writer", "layer": meta.get("name")},
    )
    return [str(written)]


# ---- GeoJSON --------------------------------------------------------------------------------------------------------
def _geojson_writer(path: str, info: dict):
    from vimscope.writers import GeoJSONWriter

    gz = str(path).endswith(".gz")
    return GeoJSONWriter(path, gzip=gz, overwrite=True)


def _area_measurements(geom, info: dict) -> dict:
    from vimscope.writers import area_measurements

    unit = info.get("unit") or "pixel"
    pixel = info.get("pixel_size") if unit != "pixel" else None
    return area_measurements(geom.area, pixel, "µm" if unit in ("um", "micrometer") else unit)


def write_labels_geojson(path: str, data, meta: dict) -> list[str]:
    """Polygons of a labels layer: class regions as annotations (instance maps as detections, one per id)."""
    import shapely

    from vimscope.vector import instance_polygons, label_polygons
    from vimscope.writers import qupath_feature

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

    from vimscope.writers import qupath_feature

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
