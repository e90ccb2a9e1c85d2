"""``OmeZarrWriter``: streams stitched blocks of a run into its NGFF store (layout: the package docstring).

Blocks arrive in output pixels and go straight to their chunks: coded and written by a few threads
(``writers.chunkio``, the bytes zarr writes, without its per-call thread hand-offs), asynchronously; ``flush()``
and ``finalize()`` wait for them and raise their errors. Callers write chunk-aligned boxes (a partly covered chunk
is read, updated and rewritten). Pyramids are built by a bounded post-pass in ``finalize()`` or, with
``pyramid="incremental"``, on every ``flush()`` for the boxes of each array written since the last one.
Everything lives in ``<path>.partial`` until ``commit()`` renames it.
"""

from __future__ import annotations

import json
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vimscope.types import Box
from vimscope.writers.atomic import atomic_write_json, commit_path, output_errors, partial_path, remove_tree
from vimscope.writers.chunkio import ChunkArray, ChunkIO, remove_partials
from vimscope.writers.histogram import value_counts
from vimscope.writers.omezarr import layout
from vimscope.writers.omezarr.codecs import IMAGE_CODECS
from vimscope.writers.omezarr.ngff import class_name_color
from vimscope.writers.pyramid import build_levels, build_region, default_levels, downsample_mean, downsample_mode

RECORD_FILE = ".vimscope_done.json"


class OmeZarrWriter:
    """Streams stitched blocks into an NGFF 0.4 store; see the module docstring for the layout."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        out_shape: tuple[int, int],
        scale_um: float,
        classes: list,
        image: bool = True,
        image_channels: int = 3,
        probabilities: int | None = None,
        probability_names: list[str] | None = None,
        scratch_probabilities: bool = False,
        features: int | None = None,
        feature_stride: int = 16,
        instances: bool = False,
        chunk: int = 512,
        levels: int | None = None,
        metadata: dict | None = None,
        unit: str | None = "micrometer",
        image_codec: str = "blosc",
        jpeg_quality: int = 90,
        pyramid: str = "post",
        resume: bool = False,
        io_threads: int | None = None,
    ) -> None:
        """``image_codec``: ``"blosc"`` (every NGFF reader) or ``"jpeg"`` (smaller; see ``codecs`` for the readers
        that fail on it). ``scratch_probabilities``: the probabilities are read back by a later step and then
        ``discard``-ed: level 0 only, coded by the fastest lossless codec (``codecs.scratch_codec``)."""
        if pyramid not in ("post", "incremental"):
            raise ValueError(f"pyramid must be 'post' or 'incremental', not {pyramid!r}")
        if image_codec not in IMAGE_CODECS:
            raise ValueError(f"image_codec must be one of {', '.join(IMAGE_CODECS)}, not {image_codec!r}")
        if chunk % feature_stride:
            raise ValueError(f"chunk ({chunk}) must be a multiple of feature_stride ({feature_stride})")
        self.final_path = Path(path)
        self.partial_path = partial_path(self.final_path)
        self.out_shape = (int(out_shape[0]), int(out_shape[1]))
        self.scale = float(scale_um)
        self.unit = unit
        self.classes = list(classes)
        self.chunk = int(chunk)
        self.levels = int(levels or default_levels(self.out_shape, self.chunk))
        self.metadata = dict(metadata or {})
        self.pyramid = pyramid
        self.image = image
        self.committed = False
        # per array: (level, box) whose coarser levels are not built yet (boxes in that level's elements)
        self._dirty: dict[str, list[tuple[int, Box]]] = {}
        self._lock = threading.Lock()
        self._io = ChunkIO(io_threads)
        self._pyramids: ThreadPoolExecutor | None = None  # flush_async: one background flush at a time
        self._flushing: list[Future] = []
        self._groups = layout.plan_families(
            self.out_shape,
            self.levels,
            self.chunk,
            image=image,
            image_channels=image_channels,
            probabilities=probabilities,
            scratch_probabilities=scratch_probabilities,
            features=features,
            feature_stride=feature_stride,
            instances=instances,
            codec=image_codec,
            quality=jpeg_quality,
        )
        self.probability_names = probability_names or (
            [_name(c) for c in self.classes] if probabilities == len(self.classes) else None
        )
        self._layout = layout.layout_record(self.out_shape, self.scale, self.chunk, self.levels, self._groups)
        with output_errors(self.final_path, self.partial_path):
            self.resumed = resume and layout.saved_layout(self.partial_path) == self._layout
            if not self.resumed:
                self._create()
            self._open()
        if self.resumed and pyramid == "incremental":
            # what an interrupted run wrote may still lack its coarser levels (flushes wait for final rows)
            for name, g in self._groups.items():
                h, w = g.shapes[0]
                self._dirty[name] = [(0, Box(0, 0, w, h))]

    # ---- the store on disk -------------------------------------------------------------------------------------
    def _create(self) -> None:
        if self.partial_path.exists():
            remove_tree(self.partial_path)
        root = layout.create_arrays(self.partial_path, self._groups)
        self._write_metadata(root, complete=False)

    def _open(self) -> None:
        import zarr

        remove_partials(self.partial_path)  # chunks a killed run was writing: the resumed bands write them again
        self._root = zarr.open_group(str(self.partial_path), mode="r+", zarr_format=2)
        self._arrays = {n: [self._root[g.array_path(i)] for i in range(len(g.shapes))] for n, g in self._groups.items()}
        self._open_chunks(self.partial_path)

    def _open_chunks(self, root: Path) -> None:
        """The direct chunk access of every array (``writers.chunkio``), under ``root``."""
        self._chunks = {
            n: [
                ChunkArray(
                    root / g.array_path(i), g.level_shape(i), g.chunks(), g.dtype, g.compressor, cache=n != "image"
                )
                for i in range(len(g.shapes))
            ]
            for n, g in self._groups.items()
        }

    def _write_metadata(self, root, complete: bool, stats: dict | None = None) -> None:
        vims = {"layout": self._layout, "metadata": self.metadata, "complete": complete, "classes": self._class_list()}
        if stats is not None:
            vims["stats"] = stats
        attrs = layout.group_attrs(
            self._groups,
            store_name=self.final_path.name,
            scale=self.scale,
            unit=self.unit,
            classes=self.classes,
            probability_names=self.probability_names,
            metadata=self.metadata,
            vimscope=vims,
        )
        layout.write_attrs(root, attrs)

    def _class_list(self) -> list[dict]:
        return [{"value": i, "name": _name(c), "color": _color(c)} for i, c in enumerate(self.classes)]

    # ---- public API -------------------------------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        """Where the store is now: the partial folder until ``commit()``, then the final name."""
        return self.final_path if self.committed else self.partial_path

    @property
    def names(self) -> list[str]:
        return list(self._groups)

    def array(self, name: str, level: int = 0):
        """The zarr array of one level (for partial display while a run writes, and for readers of levels)."""
        return self._arrays[self._group(name).name][level]

    def level_count(self, name: str) -> int:
        return len(self._group(name).shapes)

    def group_path(self, name: str) -> Path:
        g = self._group(name)
        return self.store_path / g.path if g.path else self.store_path

    def grid_box(self, name: str, box: Box) -> Box:
        """``box`` (output pixels) in the level-0 elements of group ``name`` (the token grid for features)."""
        g = self._group(name)
        h, w = g.shapes[0]
        if g.stride == 1:
            return box
        if box.x % g.stride or box.y % g.stride:
            raise ValueError(f"{name}: box {box} does not start on the stride-{g.stride} token grid")
        x0, y0 = box.x // g.stride, box.y // g.stride
        x1, y1 = min(w, math.ceil(box.x1 / g.stride)), min(h, math.ceil(box.y1 / g.stride))
        return Box(x0, y0, x1 - x0, y1 - y0)

    def write_block(self, name: str, box: Box, data: np.ndarray, *, channels_last: bool = True) -> None:
        """Store one block. ``box`` is in output pixels; ``data`` is (h, w) for label maps and (h, w, c) for
        image / probabilities / features ((c, h, w) with ``channels_last=False``); features come at the token grid.
        """
        g = self._group(name)
        gbox = self.grid_box(name, box)
        self._check_box(name, gbox, g.shapes[0])
        data = np.asarray(data)
        if g.channels is not None:
            if data.ndim == 2 and g.channels == 1:
                data = data[None] if not channels_last else data[..., None]
            if channels_last:
                data = np.moveaxis(data, -1, 0)
        expected = g.level_shape(0)[:-2] + (gbox.h, gbox.w)
        if data.shape != expected:
            raise ValueError(f"{name}: block for {gbox} has shape {data.shape}, expected {expected}")
        with output_errors(self.final_path, self.partial_path):
            self._io.write(self._chunks[name][0], gbox, data)
        if self.pyramid == "incremental":
            with self._lock:
                self._dirty.setdefault(name, []).append((0, self.grid_box(name, _align_to_stride(box, g.stride))))

    def read_block(self, name: str, box: Box, level: int = 0) -> np.ndarray:
        """A block as stored ((h, w) or (c, h, w)), ``box`` in that level's elements (after pending writes)."""
        g = self._group(name)
        self._check_box(name, box, g.shapes[level])
        with output_errors(self.final_path, self.partial_path):
            return self._io.read(self._chunks[name][level], box)

    def flush(self, names: list[str] | None = None) -> None:
        """Bring the pyramids up to date for the boxes written since the last flush (``pyramid="incremental"``)
        and wait until every write is on disk. ``names``: only these arrays' pyramids (all when None)."""
        self._drain_flushes()
        self._build_dirty(self._take_dirty(names))

    def flush_async(self, final: dict[str, int] | None = None) -> Future:
        """``flush()`` in the background (one flush after the other, in order): the future is done when the
        pyramids of everything written so far are built and on disk, and raises what the flush met.

        ``final``: per array, the level-0 row above which its data is final (the stitcher knows): coarser chunks
        that read rows below it wait for a later flush instead of being built now and again then."""
        todo = self._take_dirty(None)
        with self._lock:
            if self._pyramids is None:
                self._pyramids = ThreadPoolExecutor(1, thread_name_prefix="vimscope-pyramid")
            future = self._pyramids.submit(self._build_dirty, todo, final)
            self._flushing.append(future)
        return future

    def wait(self) -> None:
        """Wait until every block written so far is on disk (their pyramids may still be building)."""
        with output_errors(self.final_path, self.partial_path):
            self._io.wait()

    def _take_dirty(self, names) -> dict[str, list[tuple[int, Box]]]:
        with self._lock:
            todo = {n: b for n, b in self._dirty.items() if names is None or n in names}
            for n in todo:
                del self._dirty[n]
        return todo

    def _build_dirty(self, todo: dict[str, list[tuple[int, Box]]], final: dict[str, int] | None = None) -> None:
        """Build the pyramids above these boxes, one thread per array (they share no chunk), and wait; what is
        not final yet (``final``, see ``flush_async``) stays for a later flush."""

        def build(name):
            left = self._build_levels(name, todo[name], None if final is None else final.get(name))
            if left:
                with self._lock:
                    self._dirty.setdefault(name, []).extend(left)

        names = [n for n in self._groups if todo.get(n)]
        with output_errors(self.final_path, self.partial_path):
            if len(names) > 1:
                with ThreadPoolExecutor(len(names), thread_name_prefix="vimscope-pyramid-group") as pool:
                    for f in [pool.submit(build, n) for n in names]:
                        f.result()
            elif names:
                build(names[0])
            self._io.wait()

    def _drain_flushes(self) -> None:
        """Wait for the background flushes; raise the first error among them."""
        with self._lock:
            futures, self._flushing = self._flushing, []
        error = None
        for f in futures:
            e = f.exception()
            error = error or e
        if error is not None:
            raise error

    def finalize(self) -> dict:
        """Build what is left of the pyramids, count class pixels and mark the store complete; returns the stats."""
        counts = np.zeros(256, np.int64)

        def count(_box, block):
            counts[:] += value_counts(block)

        with output_errors(self.final_path, self.partial_path):
            self._drain_flushes()
            if self.pyramid == "incremental":
                self.flush()
                counts = self._count_level0("classes")
            else:
                for name in self._groups:
                    self._build_pyramid(name, None, on_level0=count if name == "classes" else None)
                if len(self._groups["classes"].shapes) == 1:
                    counts = self._count_level0("classes")
            self._io.wait()
            stats = {
                "class_pixels": {_name(c): int(counts[i]) for i, c in enumerate(self.classes)},
                "unlabelled_pixels": int(counts[len(self.classes) :].sum()),
                "levels": self.levels,
                "scale": self.scale,
                "unit": self.unit,
            }
            self._write_metadata(self._root, complete=True, stats=stats)
            record = self.partial_path / RECORD_FILE
            if record.exists():
                record.unlink()
        return stats

    def discard(self, name: str, *, stats: dict | None = None) -> None:
        """Leave array family ``name`` out of the finished store (after ``finalize``, with its ``stats``): a map
        a later step of the run read back (a nuclei model's probabilities, for its instances) that was not asked
        for. Its folder goes and the metadata is written again without it."""
        with output_errors(self.final_path, self.partial_path):
            self._drain_flushes()
            self._io.wait()
            family = self._groups.pop(name)
            for table in (self._arrays, self._chunks, self._dirty):
                table.pop(name, None)
            self._layout = layout.layout_record(self.out_shape, self.scale, self.chunk, self.levels, self._groups)
            remove_tree(self.partial_path / family.path)
            self._write_metadata(self._root, complete=True, stats=stats)

    def commit(self, *, overwrite: bool = False) -> Path:
        """Rename the finished store to its final name."""
        self.close()
        commit_path(self.partial_path, self.final_path, overwrite=overwrite)
        self.committed = True
        self._open_chunks(self.final_path)
        return self.final_path

    def close(self) -> None:
        """Wait for pending flushes and writes and stop the writing threads (``commit`` does it too); the store
        stays open."""
        try:
            self._drain_flushes()
        finally:
            with self._lock:
                pool, self._pyramids = self._pyramids, None
            if pool is not None:
                pool.shutdown()
            with output_errors(self.final_path, self.partial_path):
                self._io.close()

    # ---- resume record ---------------------------------------------------------------------------------------
    def mark_done(self, key: str) -> None:
        """Record ``key`` (e.g. a band index) as flushed to disk; call after ``flush()``."""
        done = self.done()
        done.add(str(key))
        atomic_write_json(self.partial_path / RECORD_FILE, {"done": sorted(done)}, indent=None)

    def done(self) -> set[str]:
        record = self.partial_path / RECORD_FILE
        if not self.resumed and not record.exists():
            return set()
        try:
            return set(json.loads(record.read_text())["done"])
        except (OSError, ValueError, KeyError):
            return set()

    # ---- internals -------------------------------------------------------------------------------------------
    def _group(self, name: str) -> layout.ArrayFamily:
        try:
            return self._groups[name]
        except KeyError:
            raise ValueError(f"this store has no {name!r} output (it has {', '.join(self._groups)})") from None

    @staticmethod
    def _check_box(name: str, box: Box, shape: tuple[int, int]) -> None:
        h, w = shape
        if box.x < 0 or box.y < 0 or box.w <= 0 or box.h <= 0 or box.x1 > w or box.y1 > h:
            raise ValueError(f"{name}: box {box} is not inside the {w} x {h} grid")

    def _level_access(self, name: str):
        """(read, write, reduce, bytes per px) for building the pyramid of ``name`` chunk by chunk."""
        g = self._groups[name]
        arrays = self._chunks[name]
        reduce = downsample_mode if g.is_label else downsample_mean
        # input block plus the reduction's temporaries (four quarter views summed in 32 bits, or stacked)
        bpp = max(4, np.dtype(g.dtype).itemsize) * (g.channels or 1) * 2

        def read(level, b):
            return self._io.read(arrays[level], b)

        def write(level, b, data):
            self._io.write(arrays[level], b, data)

        return read, write, reduce, bpp

    def _build_levels(self, name: str, dirty: list[tuple[int, Box]], final: int | None) -> list[tuple[int, Box]]:
        g = self._groups[name]
        if len(g.shapes) < 2:
            return []
        read, write, reduce, bpp = self._level_access(name)
        return build_levels(read, write, reduce, g.shapes, g.chunk, dirty, final=final, bytes_per_px=bpp)

    def _build_pyramid(self, name: str, box: Box | None, on_level0=None) -> None:
        g = self._groups[name]
        if len(g.shapes) < 2:
            return
        read, write, reduce, bpp = self._level_access(name)
        build_region(read, write, reduce, g.shapes, g.chunk, box, bytes_per_px=bpp, on_level0=on_level0)

    def _count_level0(self, name: str) -> np.ndarray:
        """(256,) pixels of each value of a uint8 level 0, counted chunk by chunk in parallel (the slide's class
        map, 4.8 Gpx for an 80k x 60k slide, in seconds on a large host)."""
        arr = self._chunks[name][0]
        h, w = self._groups[name].shapes[0]
        keys = list(arr.keys(Box(0, 0, w, h)))
        threads = max(1, min(16, (os.cpu_count() or 1) - 1))
        with ThreadPoolExecutor(threads, thread_name_prefix="vimscope-count") as pool:
            parts = pool.map(lambda key: value_counts(self._io.read(arr, arr.chunk_box(key))), keys, chunksize=16)
            return np.sum(list(parts), axis=0, dtype=np.int64) if keys else np.zeros(256, np.int64)

    def __enter__(self) -> OmeZarrWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self.committed:
            self.finalize()
            self.commit()


def _name(c) -> str:
    return class_name_color(c)[0]


def _color(c) -> list[int]:
    return class_name_color(c)[1]


def _align_to_stride(box: Box, stride: int) -> Box:
    if stride == 1:
        return box
    x0, y0 = box.x // stride * stride, box.y // stride * stride
    return Box(x0, y0, box.x1 - x0, box.y1 - y0)


__all__ = ["OmeZarrWriter"]
