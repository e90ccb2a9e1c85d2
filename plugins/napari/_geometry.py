"""From napari's world coordinates to the slide's level-0 pixels: the field of view, shapes, label outlines.

napari works in (row, col) world coordinates (µm or map units after the layer's scale and translate); the pipeline
wants level-0 pixel boxes or shapely geometry in (x, y) = (col, row). These helpers hold that conversion.
"""

from __future__ import annotations

import math

import numpy as np

from vimscope.types import Box


def world_to_level0(image_layer, points_rc: np.ndarray) -> np.ndarray:
    """World (row, col) points -> level-0 (row, col) in pixel-edge coordinates of a (multiscale) image layer.

    napari centres pixel i on data coordinate i; the pipeline's convention (QuPath's) has pixel i cover [i, i+1),
    so the edge coordinate is the data coordinate + 0.5.
    """
    points_rc = np.atleast_2d(np.asarray(points_rc, float))
    return np.array([image_layer.world_to_data(p)[-2:] for p in points_rc], float) + 0.5


def layer_to_world(layer, points_rc: np.ndarray) -> np.ndarray:
    """A layer's data (row, col) points -> world (row, col)."""
    points_rc = np.atleast_2d(np.asarray(points_rc, float))
    return np.array([layer.data_to_world(p)[-2:] for p in points_rc], float)


def clip_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box | None:
    """The integer box covering [x0, x1) x [y0, y1), clipped to the image; None if nothing is left."""
    bx0, by0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    bx1, by1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if bx1 <= bx0 or by1 <= by0:
        return None
    return Box(bx0, by0, bx1 - bx0, by1 - by0)


def field_of_view_box(viewer, image_layer, dimensions: tuple[int, int]) -> Box | None:
    """The part of the slide visible on the canvas, as a level-0 pixel box (None when the slide is off-screen)."""
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    center = np.asarray(camera.center, float)[-2:]
    zoom = float(camera.zoom)  # screen pixels per world unit
    height, width = viewer.canvas.size if hasattr(viewer, "canvas") else viewer._canvas_size
    half = np.array([height, width], float) / (2 * zoom)
    corners_world = np.array([center - half, center + half])
    corners = world_to_level0(image_layer, corners_world)
    (r0, c0), (r1, c1) = corners.min(axis=0), corners.max(axis=0)
    return clip_box(c0, r0, c1, r1, *dimensions)


def _shape_polygon(vertices_rc: np.ndarray, shape_type: str):
    """One napari shape (vertices in level-0 pixel-edge (row, col)) as a shapely geometry in (x, y), or None."""
    from shapely import affinity
    from shapely.geometry import LineString, Point, Polygon

    xy = np.asarray(vertices_rc, float)[:, ::-1]
    if shape_type == "ellipse":
        # napari stores an ellipse as the four corners of its bounding box
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        circle = Point((x0 + x1) / 2, (y0 + y1) / 2).buffer(1.0, quad_segs=32)
        return affinity.scale(circle, (x1 - x0) / 2, (y1 - y0) / 2)
    if shape_type in ("line", "path"):
        return LineString(xy).buffer(0.5) if len(xy) > 1 else None
    if len(xy) < 3:
        return None
    poly = Polygon(xy)
    return poly if poly.is_valid else poly.buffer(0)


def shapes_region(shapes_layer, image_layer, dimensions: tuple[int, int]):
    """The union of a shapes layer's shapes in level-0 pixel (x, y), clipped to the slide; None if empty."""
    from shapely.geometry import box as shapely_box
    from shapely.ops import unary_union

    parts = []
    for data, shape_type in zip(shapes_layer.data, shapes_layer.shape_type):
        level0 = world_to_level0(image_layer, layer_to_world(shapes_layer, np.asarray(data)[:, -2:]))
        geom = _shape_polygon(level0, shape_type)
        if geom is not None and not geom.is_empty:
            parts.append(geom)
    if not parts:
        return None
    region = unary_union(parts).intersection(shapely_box(0, 0, *dimensions))
    return None if region.is_empty else region


def data_to_level0(points_rc, scale, translate, pixel_size: float) -> np.ndarray:
    """A layer's data (row, col) -> level-0 pixel-edge (row, col), given the layer's scale and translate (last two
    axes) and the slide's level-0 pixel size in world units. For writers, which get a layer's state, not the layer.
    """
    points_rc = np.atleast_2d(np.asarray(points_rc, float))[:, -2:]
    world = points_rc * np.asarray(scale, float)[-2:] + np.asarray(translate, float)[-2:]
    return world / float(pixel_size) + 0.5


def shapes_geometries(data, shape_types, scale, translate, pixel_size: float) -> list:
    """(index, shapely geometry in level-0 pixel-edge (x, y)) for each usable shape of a shapes layer's state."""
    out = []
    for i, (vertices, shape_type) in enumerate(zip(data, shape_types)):
        geom = _shape_polygon(data_to_level0(vertices, scale, translate, pixel_size), shape_type)
        if geom is not None and not geom.is_empty:
            out.append((i, geom))
    return out
