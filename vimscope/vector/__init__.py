"""Vectorisation (layer 1: numpy, scipy, shapely; no torch): label maps to polygons on pixel edges, class regions
of a whole slide band by band, regions of interest, and reading GeoJSON annotations.

``polygons``: polygons and per-value geometries of a label map (``outlines`` traces them with array operations).
``regions``: class regions merged across band borders, slivers dropped, clipped to the image and the region.
``roi``: regions of interest from code or GeoJSON, repaired and indexed. ``geojson``: QuPath GeoJSON read back.
``footprints``: outlines simplified and squared where rectilinear; ``ground``: map coordinates and areas in m².
Writing GeoJSON is ``vimscope.writers``' job. Names are re-exported lazily (PEP 562).
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_EXPORTS = {
    "label_polygons": "vimscope.vector.polygons",
    "instance_polygons": "vimscope.vector.polygons",
    "label_faces": "vimscope.vector.polygons",
    "group_parts": "vimscope.vector.polygons",
    "rasterize": "vimscope.vector.polygons",
    "clip_to_image": "vimscope.vector.polygons",
    "iter_class_regions": "vimscope.vector.regions",
    "MIN_REGION_AREA": "vimscope.vector.regions",
    "regularise": "vimscope.vector.footprints",
    "orthogonalise": "vimscope.vector.footprints",
    "to_map": "vimscope.vector.ground",
    "ground_area_m2": "vimscope.vector.ground",
    "RegionMask": "vimscope.vector.roi",
    "outline_clip": "vimscope.vector.roi",
    "read_geojson_region": "vimscope.vector.roi",
    "resolve_region": "vimscope.vector.roi",
    "read_features": "vimscope.vector.geojson",
    "classification_name": "vimscope.vector.geojson",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
