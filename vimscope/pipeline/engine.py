"""``iter_run``: one slide through every stage, as a stream of ``Progress`` events; ``run`` drains it.

slide -> tissue mask -> tile plan (stripe-major bands) -> reader threads -> model -> stitchers -> OME-Zarr blocks.
After each band whose chunks are written and flushed, the resume record advances; a killed run restarts at the
first band not done and recomputes only the tiles whose chunks were still open. The store lives under
``<stem>.ome.zarr.partial`` until everything (pyramids, preview, summary, GeoJSON) is written, then is renamed.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vimscope.errors import Cancelled, ConfigError
from vimscope.pipeline.config import PipelineConfig
from vimscope.pipeline.setup import RunSetup, forward, output_paths, prepare, slide_stem
from vimscope.tiling.loader import TileLoader, batches_in_order, default_workers
from vimscope.types import Box, CancelToken, Progress

__all__ = ["iter_run", "run", "RunResult", "slide_stem", "output_paths"]


@dataclass
class RunResult:
    """What a finished (or skipped) run leaves: its summary and the paths of its outputs."""

    summary: dict
    paths: dict[str, Path]
    skipped: bool = False
    report: str = ""
    notes: list[str] = field(default_factory=list)


def _as_config(config) -> PipelineConfig:
    if config is None:
        return PipelineConfig.load()
    if isinstance(config, PipelineConfig):
        config.validate()
        return config
    if isinstance(config, dict):
        return PipelineConfig.load(**config)
    raise ConfigError(f"config must be a PipelineConfig or a mapping, not {type(config).__name__}")


def iter_run(
    slide,
    config: PipelineConfig | dict | None = None,
    *,
    out: str | Path,
    region=None,
    cancel: CancelToken | None = None,
    model: torch.nn.Module | None = None,
) -> Iterator[Progress]:
    """Run ``config`` on ``slide`` (a path or an open SlideReader), writing into the folder ``out``.

    ``region``: level-0 boxes or shapely polygons to restrict the run to. ``cancel``: checked between batches;
    a cancelled run flushes what it has and raises ``Cancelled`` (rerun to resume). ``model``: an already
    built model (with ``.spec``) instead of the configured one. Yields ``Progress`` events; the last one
    (stage ``done``) carries the ``RunResult`` in ``outputs["result"]``.
    """
    from vimscope.io import open_slide

    config = _as_config(config)
    own = not hasattr(slide, "meta")
    reader = open_slide(slide, mpp=config.mpp) if own else slide
    try:
        out = Path(out)
        paths = output_paths(out, slide_stem(reader.meta.path))
        if paths["zarr"].exists() and not config.overwrite:
            yield _skipped(paths)
            return
        setup = prepare(reader, config, out, region, model)
        yield from _process(setup, cancel)
        yield from _finish(setup)
    finally:
        if own:
            with contextlib.suppress(Exception):
                reader.close()


def run(slide, config=None, *, out, region=None, cancel=None, model=None, on_progress=None) -> RunResult:
    """Drain ``iter_run``; ``on_progress(event)`` sees every event. Returns the run's result."""
    result = None
    for event in iter_run(slide, config, out=out, region=region, cancel=cancel, model=model):
        if on_progress is not None:
            on_progress(event)
        if event.stage == "done":
            result = event.outputs.get("result")
    return result


def _skipped(paths: dict[str, Path]) -> Progress:
    from vimscope.pipeline.finish import read_summary

    stem = paths["zarr"].name[: -len(".ome.zarr")]
    report = f"{stem}: done before, skipped (--overwrite runs it again)"
    result = RunResult(read_summary(paths["summary"]), paths, skipped=True, report=report)
    return Progress("done", 1, 1, message=report, outputs={"result": result, "zarr": paths["zarr"]})


def _full_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a short batch with blank tiles: every forward pass then has the same shape, so a tile's output does not
    depend on how many tiles shared its batch (a resumed run recomputes exactly what the first run wrote)."""
    if x.shape[0] >= size:
        return x
    return torch.cat([x, x.new_zeros((size - x.shape[0], *x.shape[1:]))])


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    return Box(x0, y0, max(a.x1, b.x1) - x0, max(a.y1, b.y1) - y0)


def _level0(box: Box, scale: float) -> Box:
    """An output-pixel box in level-0 pixels."""
    return box.scale(1.0 / scale) if scale != 1 else box


class _Bands:
    """Which bands are complete: a band is done once every one of its tiles has been stitched."""

    def __init__(self, plan, done: set[int]) -> None:
        self.left = {b.index: len(b.tiles) for b in plan.bands if b.index not in done}
        self.of = {t: b.index for b in plan.bands for t in b.tiles}
        self.todo = deque(b.index for b in plan.bands if b.index not in done)

    def finish_tiles(self, tiles) -> list[int]:
        for t in tiles:
            b = self.of.get(t)
            if b in self.left:
                self.left[b] -= 1
        finished = []
        while self.todo and self.left[self.todo[0]] == 0:
            finished.append(self.todo.popleft())
        return finished


def _process(s: RunSetup, cancel: CancelToken | None) -> Iterator[Progress]:
    """The tile loop: read ahead, run the model, stitch, write finished chunks, record finished bands."""
    from vimscope.pipeline.finish import plan_message

    config, plan, lm, writer, record, spec = s.config, s.plan, s.lm, s.writer, s.record, s.lm.spec
    batches = batches_in_order(sorted(s.needed), config.batch_size)  # padded to batch_size (see _full_batch)
    total = sum(len(b) for b in batches)
    bands = _Bands(plan, set(record.done_bands))
    handles = {
        "zarr": writer.store_path,
        "classes": writer.array("classes"),
        "scale": plan.scale,
        "out_shape": tuple(plan.out_shape),
        "plan": plan,
    }
    s.timings = {"read_wait": 0.0, "model": 0.0, "stitch_write": 0.0}
    s.tiles_run, s.peak_open = 0, 0
    yield Progress("plan", 0, total, outputs=dict(handles), message=plan_message(s.stem, plan, lm, s.notes))
    loader = TileLoader(
        s.reader,
        plan,
        batches,
        workers=config.workers or default_workers(),
        prefetch=config.prefetch,
        pad=s.pad,
        pad_value=config.pad_value,
        damaged_value=config.pad_value,
        channels=spec.in_chans,
    )
    with contextlib.closing(iter(loader)) as stream:
        while True:
            if cancel is not None and cancel.cancelled:
                writer.flush()
                record.seconds += time.perf_counter() - s.t0
                record.save()
                raise Cancelled(
                    f"cancelled after {len(record.done_bands)} of {len(plan.bands)} bands; "
                    f"rerun to resume from {writer.partial_path}"
                )
            t_read = time.perf_counter()
            batch = next(stream, None)
            if batch is None:
                break
            t_model = time.perf_counter()
            x = _full_batch(batch.to_device(lm.device, spec.mean, spec.std), config.batch_size)
            outputs = {k: v[: len(batch.tiles)] for k, v in forward(lm, x, s.segmentation, s.features).items()}
            if lm.device.type == "cuda":
                torch.cuda.synchronize(lm.device)
            t_stitch = time.perf_counter()
            written = None
            for name, box, data in s.stitcher.add_batch(batch, outputs):
                if s.roi is not None and name in ("classes", "probabilities"):
                    inside = s.roi.mask(box)
                    if inside is not None:
                        data = data * (inside if data.ndim == 2 else inside[..., None])
                writer.write_block(name, box, data)
                written = _union(written, box)
            loader.recycle(batch)
            for t, message in batch.damaged.items():
                record.damaged[t] = {"box": _level0(plan.tiles[t].box, plan.scale).to_list(), "message": message}
            finished = bands.finish_tiles(batch.tiles)
            if finished:  # chunks are written: make the pyramid follow, then let the record say so
                writer.flush()
                record.done_bands.extend(finished)
                record.save()
            s.timings["read_wait"] += t_model - t_read
            s.timings["model"] += t_stitch - t_model
            s.timings["stitch_write"] += time.perf_counter() - t_stitch
            s.tiles_run += len(batch.tiles)
            s.peak_open = max(s.peak_open, s.stitcher.open_chunks)
            box0 = _level0(written, plan.scale) if written is not None else None
            yield Progress("tiles", s.tiles_run, total, box=box0, outputs=handles)
            for b in finished:
                box0 = _level0(plan.bands[b].box, plan.scale)
                yield Progress("band", len(record.done_bands), len(plan.bands), box=box0, outputs=handles)


def _finish(s: RunSetup) -> Iterator[Progress]:
    from vimscope.pipeline import finish

    s.timings["compute"] = s.record.seconds + time.perf_counter() - s.t0
    result = None
    for event in finish.finish(s):
        if isinstance(event, Progress):
            yield event
        else:
            result = RunResult(**event)
    outputs = {
        "zarr": s.paths["zarr"],
        "scale": s.plan.scale,
        "plan": s.plan,
        "out_shape": tuple(s.plan.out_shape),
        "result": result,
    }
    yield Progress("done", 1, 1, message=result.report, outputs=outputs)
