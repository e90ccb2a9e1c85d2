"""Sample data: the demo slide fetched by the set-up, and a synthetic slide made locally without network."""

from __future__ import annotations

from vimscope_napari._reader import read_slide
from vimscope_napari._synthetic import synthetic_slide_path

from vimscope.demo import DEMO_NAME, cache_dir, demo_slide_path
from vimscope.errors import SlideNotFoundError


def demo_slide() -> list:
    """OpenSlide's CMU-1-Small-Region.svs from vimscope's cache (``bash .ci/setup`` puts it there)."""
    path = demo_slide_path()
    if path is None:
        raise SlideNotFoundError(
            f"the demo slide {DEMO_NAME} is not in {cache_dir()}; run `bash .ci/setup` to fetch it "
            "(or set VIMSCOPE_CACHE to the folder that holds it)"
        )
    return read_slide(path)


def synthetic_slide() -> list:
    """A 2048 x 1536 H&E-like pyramidal OME-TIFF at 0.5 µm/px, written to the cache on first use."""
    return read_slide(synthetic_slide_path())
