"""The class regions of a run, traced from its class map as the exports need them (QuPath annotations in
``exports``, map footprints in ``footprints``): one reader for both, so their bands, slivers and clipping agree."""

from __future__ import annotations

from vimscope.pipeline.runstate import Run

__all__ = ["traced_regions"]


def traced_regions(run: Run, wait_rows=None, on_band=None, **options):
    """``(class value, outline)`` of the run's class regions (``vector.iter_class_regions``: level-0 px, merged
    across band borders, slivers dropped, cut to the image and the region), read from its class map in row bands
    of about 8192 x chunk pixels; each band is awaited (``wait_rows``) and shown to ``on_band(box)`` before it is
    read. ``options``: ``transform``, ``simplify``."""
    from vimscope.vector import iter_class_regions, outline_clip
    from vimscope.vector.regions import MIN_REGION_AREA

    p, writer = run.plan, run.writer
    h, w = p.tiling.out_shape
    chunk = writer.chunk

    def read(box):
        if wait_rows is not None:
            wait_rows(box.y1)
        if on_band is not None:
            on_band(box)
        return writer.read_block("classes", box)

    return iter_class_regions(
        read,
        (h, w),
        band_height=max(chunk, (chunk * 8192) // max(w, 1) // chunk * chunk),
        scale=p.tiling.scale,
        min_area=MIN_REGION_AREA,
        clip=outline_clip(p.reader.meta.dimensions, p.roi),
        **options,
    )
