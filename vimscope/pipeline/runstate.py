"""A run in progress: the frozen plan, the open store, resume record and stitcher, and the statistics the loop fills.

``open_run(plan)`` opens what the plan decided: the OME-Zarr writer under its partial name (resumed when the
partial store was made with the same settings), the resume record, and the stitcher, which already knows the
tiles that must (still) run. ``RunStats`` is the only part the tile loop and the finish change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vimscope.pipeline.plan import RunPlan, StoreLayout, store_metadata
from vimscope.pipeline.record import ResumeRecord


@dataclass
class RunStats:
    """What the loop and the finish measure: seconds per part, tiles run, open chunks, what decoded the tiles."""

    t0: float = field(default_factory=time.perf_counter)
    timings: dict = field(default_factory=dict)
    tiles_run: int = 0
    peak_open: int = 0
    decode: str = "reader"  # reader, cpu-tiles or nvjpeg (pipeline.loop.make_loader)


@dataclass
class Run:
    """One run: its plan and the stateful objects it opened. ``staged``: outputs written so far into the staging
    folder, by output name (``pipeline.outputs``); ``notes``: the plan's notes and what the run adds."""

    plan: RunPlan
    writer: Any  # writers.omezarr.OmeZarrWriter
    record: ResumeRecord
    stitcher: Any  # stitch.run.RunStitcher
    stats: RunStats
    notes: list[str]
    followers: Any = None  # pipeline.follow.Followers: jobs that follow the loop down the output
    staged: dict[str, Path] = field(default_factory=dict)

    @property
    def needed(self) -> set[int]:
        """Tiles that must (still) run."""
        return self.stitcher.needed_tiles


def open_run(plan: RunPlan, t0: float | None = None) -> Run:
    """Open the store, the resume record and the stitcher of ``plan``; ``t0``: when the run started (its plan)."""
    from vimscope.stitch import RunStitcher
    from vimscope.tiling import TileGeometry
    from vimscope.writers.atomic import partial_path

    t0 = time.perf_counter() if t0 is None else t0
    paths, tiling, layout = plan.paths, plan.tiling, plan.layout
    record = ResumeRecord.load(partial_path(paths.zarr), plan.key)
    writer = _writer(
        paths.zarr,
        layout,
        metadata=store_metadata(plan),
        resume=record is not None,
        image_codec=plan.config.image_codec,
    )
    if record is None or not writer.resumed:
        record = ResumeRecord.fresh(writer.partial_path, plan.key)
    done_bands = set(record.done_bands)
    done_tiles = {t for b in tiling.bands if b.index in done_bands for t in b.tiles}
    stitcher = RunStitcher(
        tiling,
        TileGeometry.from_plan(tiling, plan.reader.meta),
        mode=plan.config.stitch,
        chunk=plan.config.chunk,
        n_classes=len(plan.classes) if plan.segmentation else 0,
        extra_maps=plan.extra_maps,
        sigmoid_maps=plan.sigmoid_maps,
        probabilities=layout.probabilities,
        segmentation=plan.segmentation,
        image_channels=layout.image_channels,
        feature_dim=layout.features,
        feature_stride=plan.feature_stride,
        device=plan.lm.device,
        skip_tiles=done_tiles,
    )
    notes = list(plan.notes)
    if record.done_bands:
        notes.append(f"resumed: {len(record.done_bands)} of {len(tiling.bands)} bands were done before")
    return Run(plan, writer, record, stitcher, RunStats(t0=t0), notes)


def _writer(path: Path, layout: StoreLayout, *, metadata: dict, resume: bool, image_codec: str = "blosc"):
    """The run's OME-Zarr writer (at its partial name until the run completes), resumed when asked and possible."""
    from vimscope.writers.omezarr import OmeZarrWriter

    probability_names = [c.name for c in layout.classes] + layout.extra_maps
    return OmeZarrWriter(
        path,
        out_shape=layout.out_shape,
        scale_um=layout.scale_um,
        classes=layout.classes,
        image=layout.image_channels is not None,
        image_channels=layout.image_channels or 3,
        probabilities=len(probability_names) if layout.probabilities else None,
        probability_names=probability_names if layout.probabilities else None,
        scratch_probabilities=bool(layout.probabilities) and not layout.publish_probabilities,
        features=layout.features,
        feature_stride=layout.feature_stride,
        instances=layout.instances,
        chunk=layout.chunk,
        metadata=metadata,
        unit=layout.unit,
        pyramid="incremental",  # coarser levels follow each flushed band: only written areas are ever reduced
        resume=resume,
        image_codec=image_codec,
    )
