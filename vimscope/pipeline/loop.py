"""The tile loop: read ahead, run the model, stitch, write finished chunks, record finished bands.

After each band whose chunks are written and flushed, the resume record advances; a killed run restarts at the
first band not done and recomputes only the tiles whose chunks were still open. The host half of each batch
(placing, writing) runs one batch behind in a writer thread, so the model's next batch overlaps it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from vimscope.errors import Cancelled, DamagedTileError
from vimscope.pipeline.runstate import Run
from vimscope.pipeline.step import ModelStep
from vimscope.tiling.loader import TileLoader, batches_in_order, default_workers
from vimscope.types import Box, CancelToken, Progress

log = logging.getLogger("vimscope.pipeline")

# Finished bands whose chunks and pyramids may still be on their way to the disk before the writer thread waits:
# enough to ride out a slow flush (on an H100 host 2 left the writer waiting 4 s of a 10 s loop, 8 none); a
# killed run redoes at most this many bands more.
MAX_FLUSHING = 8
HOST_AHEAD = 2  # batches whose host half may be queued to the writer thread at once
LOOP_TIMINGS = ("read_wait", "model", "stitch_write", "write_wait")
HOST_TIMINGS = ("host_gpu_wait", "host_place", "host_write", "host_band_wait")


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


def level0(box: Box, scale: float) -> Box:
    """An output-pixel box in level-0 pixels."""
    return box.scale(1.0 / scale) if scale != 1 else box


class _Bands:
    """Which bands are complete: a band is done once every one of its tiles has been stitched. ``flushing``:
    the finished bands whose pyramids are being built (in order), recorded as done once they are."""

    def __init__(self, tiling, done: set[int]) -> None:
        self.left = {b.index: len(b.tiles) for b in tiling.bands if b.index not in done}
        self.of = {t: b.index for b in tiling.bands for t in b.tiles}
        self.todo = deque(b.index for b in tiling.bands if b.index not in done)
        self.total = len(tiling.bands)
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


def record_flushed(run: Run, bands: _Bands, wait: bool | int = False) -> None:
    """Record as done the finished bands whose chunks and pyramids are on disk. ``wait``: ``True`` waits for all
    of them, a number waits until no more than that many are still in flight."""
    limit = 0 if wait is True else (len(bands.flushing) if wait is False else int(wait))
    while bands.flushing and (len(bands.flushing) > limit or bands.flushing[0][0].done()):
        future, finished = bands.flushing.popleft()
        future.result()
        run.record.done_bands.extend(finished)
        run.record.save()


_logged: set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.log(level, message)


def make_loader(plan, batches: list[list[int]]):
    """The tile loader of a run plan, by ``config.decode``: ``gpu`` (and ``auto`` when the model runs on CUDA)
    reads a JPEG-tiled level's own tiles and decodes them with nvjpeg, else on CPU threads
    (``tiling.jpegloader``); ``cpu``, and every plan that path cannot read (resampling, other compressions, other
    readers), lets the reader decode (``tiling.loader``). The loader's ``decode`` says what decodes: nvjpeg,
    cpu-tiles or reader."""
    config, spec = plan.config, plan.lm.spec
    common = dict(
        workers=config.workers or default_workers(),
        prefetch=config.prefetch,
        pad=plan.pad,
        pad_value=config.pad_value,
        damaged_value=config.pad_value,
    )
    if config.decode == "gpu" or (config.decode == "auto" and plan.lm.device.type == "cuda"):
        from vimscope.tiling.jpegloader import JpegTileLoader, tile_decoder, tile_level

        level, why = tile_level(plan.reader, plan.tiling, spec.in_chans)
        if level is not None:
            return JpegTileLoader(
                level, plan.tiling, batches, device=plan.lm.device, decoder=tile_decoder(plan.lm.device), **common
            )
        level_ = logging.WARNING if config.decode == "gpu" else logging.INFO
        _log_once(level_, f"{plan.stem}: the reader decodes ({why})")
    return TileLoader(plan.reader, plan.tiling, batches, channels=spec.in_chans, **common)


def _record_damage(run: Run, batch) -> None:
    """List the batch's damaged tiles in the record, with their level-0 boxes (the summary reports them)."""
    tiling = run.plan.tiling
    areas = getattr(batch, "damaged_areas", {})
    for t, message in batch.damaged.items():
        run.record.damaged[t] = {
            "box": level0(tiling.tiles[t].box, tiling.scale).to_list(),
            "message": message,
            "sources": [a.to_dict() for a in areas.get(t, [])],  # the damaged tiles of the slide under it
        }


def _refuse_damage(run: Run, batch) -> None:
    """``strict``: a damaged tile fails the slide before its batch runs (the partial store is kept, nothing is
    published)."""
    if not (run.plan.config.strict and batch.damaged):
        return
    tiling = run.plan.tiling
    t, message = min(batch.damaged.items())
    box = level0(tiling.tiles[t].box, tiling.scale)
    raise DamagedTileError(
        f"tile {t} (level-0 box {box.to_list()}) is damaged: {message}; --strict fails the slide", box=box
    )


def _host_half(run: Run, bands: _Bands, batch, values: dict, ready: torch.cuda.Event | None):
    """Place a batch's values, write the chunks they finish, flush and record finished bands (the writer thread).
    ``ready``: the event after the values' copies to the host (CUDA). Returns (the box written, the bands
    finished, seconds spent, chunks open)."""
    writer, timings, roi = run.writer, run.stats.timings, run.plan.roi
    t0 = time.perf_counter()
    if ready is not None:
        ready.synchronize()  # the model's pass and the copies of its values (the GPU runs the next batch meanwhile)
        timings["host_gpu_wait"] += time.perf_counter() - t0
    _record_damage(run, batch)
    written = None
    t_gpu = time.perf_counter()
    blocks = run.stitcher.place(batch, values)
    t_place = time.perf_counter()
    timings["host_place"] += t_place - t_gpu
    for name, box, data in blocks:
        if roi is not None and name in ("classes", "probabilities"):
            inside = roi.mask(box)
            if inside is not None:
                data = data * (inside if data.ndim == 2 else inside[..., None])
        writer.write_block(name, box, data)
        written = _union(written, box)
    t_write = time.perf_counter()
    timings["host_write"] += t_write - t_place
    finished = bands.finish_tiles(batch.tiles)
    if finished:
        # Their chunks are queued: the followers may read them now (a read waits for the writes of its chunks);
        # the pyramids follow in a background thread, and the record says "done" once the band's chunks and
        # pyramids are on disk (record_flushed). Nothing here waits for the disk unless the flushes fall behind.
        if run.followers is not None:
            run.followers.rows.advance(run.stitcher.final_rows())
        bands.flushing.append((writer.flush_async(final=run.stitcher.final_rows_by_array()), finished))
    record_flushed(run, bands, wait=MAX_FLUSHING)
    timings["host_band_wait"] += time.perf_counter() - t_write
    if run.followers is not None:
        run.followers.check()  # a failed follower stops the loop
    return written, finished, time.perf_counter() - t0, run.stitcher.open_chunks


def _handles(run: Run) -> dict:
    """What every loop event carries for faces that show the output while it grows (napari)."""
    tiling = run.plan.tiling
    return {
        "zarr": run.writer.store_path,
        "classes": run.writer.array("classes"),
        "scale": tiling.scale,
        "out_shape": tuple(tiling.out_shape),
        "plan": tiling,
        "decode": run.stats.decode,
        "timings": run.stats.timings,  # live: seconds so far per part of the loop
    }


def _stop(run: Run, bands: _Bands) -> Cancelled:
    """Flush what is done and say how to resume (the caller has settled the pending host halves)."""
    record_flushed(run, bands, wait=True)
    run.writer.flush()
    run.record.seconds += time.perf_counter() - run.stats.t0
    run.record.save()
    return Cancelled(
        f"cancelled after {len(run.record.done_bands)} of {len(run.plan.tiling.bands)} bands; "
        f"rerun to resume from {run.writer.partial_path}"
    )


def tile_loop(run: Run, cancel: CancelToken | None, plan_message: str) -> Iterator[Progress]:
    """The loop (see the module docstring). One writer thread places and writes batch i (numpy, zarr, band
    flushes: host work that would leave the GPU idle) while this thread reads batch i + 1 and queues the model on
    it; up to HOST_AHEAD batches wait for the writer, so neither side stalls the other."""
    from vimscope.pipeline.follow import start_followers

    plan, stats = run.plan, run.stats
    tiling, lm, batch_size = plan.tiling, plan.lm, plan.config.batch_size
    batches = batches_in_order(sorted(run.needed), batch_size)  # padded to batch_size (see _full_batch)
    total = sum(len(b) for b in batches)
    bands = _Bands(tiling, set(run.record.done_bands))
    # model: this thread's seconds to queue a batch on the device (on a CPU: to run it). stitch_write: the writer
    # thread's seconds per batch, split into host_gpu_wait (the GPU finishing the batch and copying its values),
    # host_place (stitchers), host_write (queueing chunks; waits when the coding threads are behind) and
    # host_band_wait (finished bands reaching the disk, when more than MAX_FLUSHING are on their way)
    stats.timings = dict.fromkeys(LOOP_TIMINGS + HOST_TIMINGS, 0.0)
    stats.tiles_run, stats.peak_open = 0, 0
    step = ModelStep(lm, plan.segmentation, plan.features, graphs=plan.config.cuda_graphs)
    step.prepare((batch_size, plan.spec.in_chans, plan.tile, plan.tile))
    loader = make_loader(plan, batches)
    stats.decode = loader.decode
    run.followers = start_followers(run)  # instances and class regions, band by band beside the loop
    handles = _handles(run)
    yield Progress("plan", 0, total, outputs=dict(handles), message=plan_message)
    pending: deque = deque()  # (future, batch): host halves of earlier batches, queued to the writer thread

    def settle(keep: int = 0, quiet: bool = False) -> Iterator[Progress]:
        """Wait for host halves, oldest first, until at most ``keep`` are pending; account for each and yield its
        events (none when ``quiet``)."""
        while len(pending) > keep:
            future, done = pending.popleft()
            t_wait = time.perf_counter()
            written, finished, seconds, open_chunks = future.result()
            stats.timings["write_wait"] += time.perf_counter() - t_wait
            stats.timings["stitch_write"] += seconds
            loader.recycle(done)  # only now: the host half read the batch's (pinned) pixels
            stats.tiles_run += len(done.tiles)
            stats.peak_open = max(stats.peak_open, open_chunks)
            if not quiet:
                yield from _events(run, bands, written, finished, total, handles)

    with (
        ThreadPoolExecutor(1, thread_name_prefix="vimscope-write") as host_work,
        contextlib.closing(iter(loader)) as stream,
    ):
        while True:
            if cancel is not None and cancel.cancelled:  # no event after the cancel; the pending batch is written
                yield from settle(quiet=True)
                raise _stop(run, bands)
            t_read = time.perf_counter()
            batch = next(stream, None)
            if batch is None:
                break
            _refuse_damage(run, batch)
            t_model = time.perf_counter()
            x = _full_batch(batch.to_device(lm.device, plan.spec.mean, plan.spec.std), batch_size)
            outputs = {k: v[: len(batch.tiles)] for k, v in step(x).items()}
            values = run.stitcher.batch_values(batch, outputs)
            ready = torch.cuda.current_stream(lm.device).record_event() if lm.device.type == "cuda" else None
            stats.timings["read_wait"] += t_model - t_read
            stats.timings["model"] += time.perf_counter() - t_model
            yield from settle(keep=HOST_AHEAD - 1)
            pending.append((host_work.submit(_host_half, run, bands, batch, values, ready), batch))
        yield from settle()
        record_flushed(run, bands, wait=True)
    stats.decode = getattr(loader, "decode", stats.decode)  # nvjpeg hands over to CPU threads if its colours are wrong


def _events(run: Run, bands: _Bands, written, finished, total: int, handles: dict) -> Iterator[Progress]:
    """The events of one settled batch: its tiles, then each band it finished (stitched, its chunks queued; the
    record says done once they are on disk)."""
    tiling = run.plan.tiling
    box0 = level0(written, tiling.scale) if written is not None else None
    yield Progress("tiles", run.stats.tiles_run, total, box=box0, outputs=handles)
    for b in finished:
        box0 = level0(tiling.bands[b].box, tiling.scale)
        yield Progress("band", bands.count, len(tiling.bands), box=box0, outputs=handles)
