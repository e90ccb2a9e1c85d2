"""``iter_run``: one slide through every stage, as a stream of ``Progress`` events; ``run`` drains it.

slide -> tissue mask -> tile plan (stripe-major bands) -> reader threads -> model -> stitchers -> OME-Zarr blocks.
After each band whose chunks are written and flushed, the resume record advances; a killed run restarts at the
first band not done and recomputes only the tiles whose chunks were still open. The store lives under
``<stem>.ome.zarr.partial`` until everything (pyramids, preview, summary, GeoJSON) is written, then is renamed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vimscope.errors import Cancelled, ConfigError
from vimscope.pipeline.config import PipelineConfig
from vimscope.pipeline.setup import RunSetup, output_paths, prepare, slide_stem
from vimscope.pipeline.step import ModelStep
from vimscope.tiling.loader import TileLoader, batches_in_order, default_workers
from vimscope.types import Box, CancelToken, Progress

__all__ = ["iter_run", "run", "RunResult", "slide_stem", "output_paths", "make_loader"]
log = logging.getLogger("vimscope.pipeline")


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
        try:
            yield from _process(setup, cancel)
            yield from _finish(setup)
        except BaseException:
            if setup.followers is not None:  # instances / regions beside the loop: stop them, drop their files
                setup.followers.abort()
            with contextlib.suppress(Exception):
                setup.writer.close()  # what was queued reaches the disk (a rerun resumes from it)
            raise
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
    """Which bands are complete: a band is done once every one of its tiles has been stitched. ``flushing``:
    the finished bands whose pyramids are being built (in order), recorded as done once they are."""

    def __init__(self, plan, done: set[int]) -> None:
        self.left = {b.index: len(b.tiles) for b in plan.bands if b.index not in done}
        self.of = {t: b.index for b in plan.bands for t in b.tiles}
        self.todo = deque(b.index for b in plan.bands if b.index not in done)
        self.total = len(plan.bands)
        self.flushing: deque = deque()  # (future of writer.flush_async, band indices)

    @property
    def count(self) -> int:
        """Bands finished so far (this run's and earlier runs')."""
        return self.total - len(self.todo)

    def finish_tiles(self, tiles) -> list[int]:
        for t in tiles:
            b = self.of.get(t)
            if b in self.left:
                self.left[b] -= 1
        finished = []
        while self.todo and self.left[self.todo[0]] == 0:
            finished.append(self.todo.popleft())
        return finished


# Finished bands whose chunks and pyramids may still be on their way to the disk before the writer thread waits:
# enough to ride out a slow flush (on an H100 host 2 left the writer waiting 4 s of a 10 s loop, 8 none); a
# killed run redoes at most this many bands more.
MAX_FLUSHING = 8
HOST_AHEAD = 2  # batches whose host half may be queued to the writer thread at once


def _record_flushed(s: RunSetup, bands: _Bands, wait: bool | int = False) -> None:
    """Record as done the finished bands whose chunks and pyramids are on disk. ``wait``: ``True`` waits for all
    of them, a number waits until no more than that many are still in flight."""
    limit = 0 if wait is True else (len(bands.flushing) if wait is False else int(wait))
    while bands.flushing and (len(bands.flushing) > limit or bands.flushing[0][0].done()):
        future, finished = bands.flushing.popleft()
        future.result()
        s.record.done_bands.extend(finished)
        s.record.save()


_logged: set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.log(level, message)


def make_loader(s: RunSetup, batches: list[list[int]]):
    """The tile loader of a run, by ``config.decode``: ``gpu`` (and ``auto`` when the model runs on CUDA) reads a
    JPEG-tiled level's own tiles and decodes them with nvjpeg, else on CPU threads (``tiling.jpegloader``); ``cpu``,
    and every plan that path cannot read (resampling, other compressions, other readers), lets the reader decode
    (``tiling.loader``). Sets ``s.decode`` to what decodes: nvjpeg, cpu-tiles or reader."""
    config, spec = s.config, s.lm.spec
    common = dict(
        workers=config.workers or default_workers(),
        prefetch=config.prefetch,
        pad=s.pad,
        pad_value=config.pad_value,
        damaged_value=config.pad_value,
    )
    if config.decode == "gpu" or (config.decode == "auto" and s.lm.device.type == "cuda"):
        from vimscope.tiling.jpegloader import JpegTileLoader, tile_decoder, tile_level

        level, why = tile_level(s.reader, s.plan, spec.in_chans)
        if level is not None:
            loader = JpegTileLoader(
                level, s.plan, batches, device=s.lm.device, decoder=tile_decoder(s.lm.device), **common
            )
            s.decode = loader.decode
            return loader
        _log_once(logging.WARNING if config.decode == "gpu" else logging.INFO, f"{s.stem}: the reader decodes ({why})")
    s.decode = "reader"
    return TileLoader(s.reader, s.plan, batches, channels=spec.in_chans, **common)


def _host_half(s: RunSetup, bands: _Bands, batch, values: dict, ready: torch.cuda.Event | None):
    """Place a batch's values, write the chunks they finish, flush and record finished bands (the writer thread).
    ``ready``: the event after the values' copies to the host (CUDA). Returns (the box written, the bands
    finished, seconds spent, chunks open)."""
    plan, writer, record, timings = s.plan, s.writer, s.record, s.timings
    t0 = time.perf_counter()
    if ready is not None:
        ready.synchronize()  # the model's pass and the copies of its values (the GPU runs the next batch meanwhile)
        timings["host_gpu_wait"] += time.perf_counter() - t0
    written = None
    t_gpu = time.perf_counter()
    blocks = s.stitcher.place(batch, values)
    t_place = time.perf_counter()
    timings["host_place"] += t_place - t_gpu
    for name, box, data in blocks:
        if s.roi is not None and name in ("classes", "probabilities"):
            inside = s.roi.mask(box)
            if inside is not None:
                data = data * (inside if data.ndim == 2 else inside[..., None])
        writer.write_block(name, box, data)
        written = _union(written, box)
    t_write = time.perf_counter()
    timings["host_write"] += t_write - t_place
    for t, message in batch.damaged.items():
        record.damaged[t] = {"box": _level0(plan.tiles[t].box, plan.scale).to_list(), "message": message}
    finished = bands.finish_tiles(batch.tiles)
    if finished:
        # Their chunks are queued: the followers may read them now (a read waits for the writes of its chunks);
        # the pyramids follow in a background thread, and the record says "done" once the band's chunks and
        # pyramids are on disk (_record_flushed). Nothing here waits for the disk unless the flushes fall behind.
        if s.followers is not None:
            s.followers.rows.advance(s.stitcher.final_rows())
        bands.flushing.append((writer.flush_async(final=s.stitcher.final_rows_by_array()), finished))
    _record_flushed(s, bands, wait=MAX_FLUSHING)
    timings["host_band_wait"] += time.perf_counter() - t_write
    if s.followers is not None:
        s.followers.check()  # a failed follower stops the loop
    return written, finished, time.perf_counter() - t0, s.stitcher.open_chunks


def _process(s: RunSetup, cancel: CancelToken | None) -> Iterator[Progress]:
    """The tile loop: read ahead, run the model, stitch, write finished chunks, record finished bands.

    The host half of each batch (``_host_half``) runs one batch behind in a writer thread, so the model's next
    batch overlaps the previous batch's placing and writing; its events are yielded once it is done."""
    from vimscope.pipeline.finish import plan_message
    from vimscope.pipeline.follow import start_followers

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
    # model: this thread's seconds to queue a batch on the device (on a CPU: to run it). stitch_write: the writer
    # thread's seconds per batch, split into host_gpu_wait (the GPU finishing the batch and copying its values),
    # host_place (stitchers), host_write (queueing chunks; waits when the coding threads are behind) and
    # host_band_wait (finished bands reaching the disk, when more than MAX_FLUSHING are on their way)
    parts = ("read_wait", "model", "stitch_write", "write_wait")
    s.timings = dict.fromkeys(parts + ("host_gpu_wait", "host_place", "host_write", "host_band_wait"), 0.0)
    s.tiles_run, s.peak_open = 0, 0
    step = ModelStep(lm, s.segmentation, s.features, graphs=config.cuda_graphs)
    step.prepare((config.batch_size, spec.in_chans, s.geom.tile, s.geom.tile))
    loader = make_loader(s, batches)
    s.followers = start_followers(s)  # instances and class regions, band by band beside the loop
    handles["decode"] = s.decode  # what decodes the tiles (make_loader)
    handles["timings"] = s.timings  # live: seconds so far per part of the loop
    yield Progress("plan", 0, total, outputs=dict(handles), message=plan_message(s.stem, plan, lm, s.notes))
    pending: deque = deque()  # (future, batch): host halves of earlier batches, queued to the writer thread

    def settle(keep: int = 0, quiet: bool = False) -> Iterator[Progress]:
        """Wait for host halves, oldest first, until at most ``keep`` are pending; account for each and yield its
        events (none when ``quiet``)."""
        while len(pending) > keep:
            yield from settle_one(*pending.popleft(), quiet)

    def settle_one(future, done, quiet: bool) -> Iterator[Progress]:
        t_wait = time.perf_counter()
        written, finished, seconds, open_chunks = future.result()
        s.timings["write_wait"] += time.perf_counter() - t_wait
        s.timings["stitch_write"] += seconds
        loader.recycle(done)  # only now: the host half read the batch's (pinned) pixels
        s.tiles_run += len(done.tiles)
        s.peak_open = max(s.peak_open, open_chunks)
        if quiet:
            return
        box0 = _level0(written, plan.scale) if written is not None else None
        yield Progress("tiles", s.tiles_run, total, box=box0, outputs=handles)
        for b in finished:  # stitched, its chunks queued (the record says done once they are on disk)
            box0 = _level0(plan.bands[b].box, plan.scale)
            yield Progress("band", bands.count, len(plan.bands), box=box0, outputs=handles)

    # One writer thread places and writes batch i (numpy, zarr, band flushes: host work that would leave the GPU
    # idle) while this thread reads batch i + 1 and queues the model on it. The writer keeps every write in order;
    # up to HOST_AHEAD batches wait for it, so neither side stalls the other when one batch takes longer.
    with (
        ThreadPoolExecutor(1, thread_name_prefix="vimscope-write") as host_work,
        contextlib.closing(iter(loader)) as stream,
    ):
        while True:
            if cancel is not None and cancel.cancelled:  # no event after the cancel; the pending batch is written
                yield from settle(quiet=True)
                _record_flushed(s, bands, wait=True)
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
            outputs = {k: v[: len(batch.tiles)] for k, v in step(x).items()}
            values = s.stitcher.batch_values(batch, outputs)
            ready = torch.cuda.current_stream(lm.device).record_event() if lm.device.type == "cuda" else None
            s.timings["read_wait"] += t_model - t_read
            s.timings["model"] += time.perf_counter() - t_model
            yield from settle(keep=HOST_AHEAD - 1)
            pending.append((host_work.submit(_host_half, s, bands, batch, values, ready), batch))
        yield from settle()
        _record_flushed(s, bands, wait=True)
    s.decode = getattr(loader, "decode", s.decode)  # nvjpeg hands over to CPU threads if its colours are wrong


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
