"""Outputs people open elsewhere (layer 1: no torch): OME-Zarr (a run's store, and label maps on their own),
GeoJSON, object tables, GeoPackage, OME-TIFF, COG, preview and summary. Everything is written under a temporary
name and renamed when complete.

Names are re-exported lazily (PEP 562) so importing the package costs nothing.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_EXPORTS = {
    "OmeZarrWriter": "vimscope.writers.omezarr",
    "write_labels": "vimscope.writers.omezarr",
    "IMAGE_CODECS": "vimscope.writers.omezarr",
    "JPEG_READERS_HELP": "vimscope.writers.omezarr",
    "default_levels": "vimscope.writers.pyramid",
    "GeoJSONWriter": "vimscope.writers.geojson",
    "qupath_feature": "vimscope.writers.geojson",
    "area_measurements": "vimscope.writers.geojson",
    "ObjectTableWriter": "vimscope.writers.tables",
    "GeoPackageWriter": "vimscope.writers.gpkg",
    "write_ome_tiff": "vimscope.writers.ometiff",
    "write_geotiff": "vimscope.writers.geotiff",
    "write_preview": "vimscope.writers.preview",
    "write_summary": "vimscope.writers.summary",
    "build_summary": "vimscope.writers.summary",
    "atomic_write_bytes": "vimscope.writers.atomic",
    "atomic_dir": "vimscope.writers.atomic",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
