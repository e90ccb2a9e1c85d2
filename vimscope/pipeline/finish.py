"""The end of a run: instances, pyramids, preview, GeoJSON (and GeoPackage), other formats, summary, publishing.

Instances and class-region GeoJSON normally run beside the tile loop (``pipeline.follow``); here their results are
collected. Everything here runs after the last band is on disk, so an interruption at this stage resumes straight
here (all bands done, no tile recomputed). Every output is written into the staging folder inside the partial
store; ``publish`` renames the store, then moves them beside it (``pipeline.outputs``), so nothing stands under a
final name until the slide is complete.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from vimscope.pipeline import exports
from vimscope.pipeline.outputs import publish_staged
from vimscope.pipeline.report import class_shares, report_text, summary_dict
from vimscope.pipeline.runstate import Run
from vimscope.types import Progress


def finish(run: Run) -> Iterator:
    """Yield Progress events for the closing stages, then the RunResult's fields (a dict).

    Seconds per step land in ``run.stats.timings`` as ``finish_<step>`` (the summary's ``timings_s``)."""
    p, writer = run.plan, run.writer
    want = p.wants
    object_counts = None
    p.paths.staging.mkdir(parents=True, exist_ok=True)
    if run.followers is not None:
        run.followers.rows.advance(p.tiling.out_shape[0])  # every band is on disk
    if "nuclei" in writer.names:
        yield Progress("postprocess", 0, 1, message="labelling instances")
        with _timed(run, "instances"):
            found = _followed(run, "instances", exports.instances)
        object_counts = found["counts"]
        run.staged.update(found["paths"])
    yield Progress("write", 0, 1, message="building pyramids")
    with _timed(run, "pyramids"):
        stats = writer.finalize()
    yield from _side_outputs(run, stats, want)
    summary = summary_dict(run, stats, _final_paths(run), object_counts)
    if "summary" in want:
        run.staged["summary"] = p.paths.staged("summary")
        summary["outputs"]["summary"] = str(p.paths.final("summary"))
    if "preview" in want and ("classes" in want or "probabilities" in want):
        yield Progress("write", 0, 1, message="writing the preview")
        with _timed(run, "preview"):
            run.staged["preview"] = exports.preview(run, class_shares(summary))
        summary["outputs"]["preview"] = str(p.paths.folder / run.staged["preview"].name)
    if "summary" in want:
        from vimscope.writers.summary import write_summary

        summary["timings_s"] = {**summary["timings_s"], **_rounded(run.stats.timings)}
        write_summary(run.staged["summary"], summary)
    paths = publish(run, stats)
    yield {"summary": summary, "paths": paths, "report": report_text(summary), "notes": list(run.notes)}


def _side_outputs(run: Run, stats: dict, want) -> Iterator[Progress]:
    """Class regions (GeoJSON, GeoPackage; from their follower) and the other raster formats, staged."""
    if exports.wants_regions(run.plan):
        yield Progress("write", 0, 1, message="writing class regions")
        with _timed(run, "geojson"):
            run.staged.update(_followed(run, "geojson", exports.class_regions))
    if run.followers is not None:
        run.stats.timings.update({f"follow_{k}": v for k, v in run.followers.seconds.items()})
    for fmt in run.plan.formats:
        if fmt in exports.RASTER_FORMATS:
            yield Progress("write", 0, 1, message=f"writing {fmt}")
            with _timed(run, fmt.replace("-", "_")):
                run.staged[fmt] = exports.raster_format(run, fmt)


def _followed(run: Run, name: str, job):
    """The result of a job that ran beside the loop, or of the job run now (a resumed run with nothing left)."""
    if run.followers is not None and name in run.followers:
        return run.followers.result(name)
    return job(run)


def _final_paths(run: Run) -> dict[str, Path]:
    """Where each output will stand once published (the summary names these)."""
    folder = run.plan.paths.folder
    return {"zarr": run.plan.paths.zarr, **{k: folder / Path(v).name for k, v in run.staged.items()}}


def publish(run: Run, stats: dict) -> dict[str, Path]:
    """Drop what was computed but not asked for, rename the store, then move the staged outputs beside it."""
    p, writer = run.plan, run.writer
    run.record.remove()
    if p.layout.probabilities and not p.layout.publish_probabilities:
        writer.discard("probabilities", stats=stats)  # the instance step's input, not an output
    writer.commit(overwrite=p.config.overwrite)
    return {"zarr": p.paths.zarr, **publish_staged(p.paths, run.staged)}


def _rounded(timings: dict) -> dict:
    return {k: round(float(v), 3) for k, v in timings.items()}


@contextlib.contextmanager
def _timed(run: Run, step: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        key = f"finish_{step}"
        run.stats.timings[key] = run.stats.timings.get(key, 0.0) + time.perf_counter() - t0
