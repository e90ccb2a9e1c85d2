"""The napari sample's synthetic slide: ``vimscope.synthetic``'s H&E-like slide (pink tissue islands with purple
nuclei on white glass, a tiled pyramidal OME-TIFF with a pixel size, so it takes the same lazy path as a real slide
and the widget can segment it), made once in vimscope's cache.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from vimscope.synthetic import write_synthetic_slide

SYNTHETIC_NAME = "vimscope-synthetic-slide.ome.tif"


def synthetic_slide_path() -> Path:
    """The synthetic slide in vimscope's cache (made on first use), or in the temp folder if that is read-only."""
    from vimscope.demo import cache_dir

    for folder in (cache_dir(), Path(tempfile.gettempdir()) / "vimscope"):
        path = folder / SYNTHETIC_NAME
        if path.is_file():
            return path
        try:
            return write_synthetic_slide(path)
        except OSError:
            continue
    raise OSError("cannot write the synthetic slide to the vimscope cache or the temp folder")
