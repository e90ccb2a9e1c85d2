"""vimscope's napari plugin (npe2): reader, "Segment with vimscope" widget, writers and sample data.

napari finds it through the ``napari.manifest`` entry point (``vimscope = "vimscope_napari:napari.yaml"``).
Importing this package imports neither napari nor Qt; the contributions load them when napari calls them.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "napari_get_reader": "vimscope_napari._reader",
    "read_slide": "vimscope_napari._reader",
    "read_output": "vimscope_napari._reader",
    "SegmentWidget": "vimscope_napari._widget",
    "write_labels_zarr": "vimscope_napari._writer",
    "write_labels_geojson": "vimscope_napari._writer",
    "write_shapes_geojson": "vimscope_napari._writer",
    "demo_slide": "vimscope_napari._sample_data",
    "synthetic_slide": "vimscope_napari._sample_data",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):  # PEP 562: a contribution's module loads when it is first asked for
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
