"""The main output: an OME-NGFF 0.4 store (Zarr v2 format) that QuPath, Fiji, napari and ome-zarr-py open.

Layout of ``<stem>.ome.zarr`` (``image=True``)::

    /            the image copy at the output resolution, (c, y, x) uint8, JPEG chunks, levels 0..L-1
    labels/classes   (y, x) uint8 class map with image-label colours and class names, L levels
    labels/nuclei    (y, x) uint32 instance ids (when the model gives instances), L levels
    probabilities/   (k, y, x) uint8 class probabilities (0-255), L levels, same grid as the image
    features/        (d, y, x) float16 token grid of stride ``feature_stride``, its own scale and levels

With ``image=False`` (``--no-image-copy``) the root is a plain group and ``classes/``, ``nuclei/``, ... are
standalone multiscale images for users who overlay them on the original slide.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimscope.errors import OutputError
from vimscope.types import Box
from vimscope.writers import ngff
from vimscope.writers.atomic import atomic_write_json, commit_path, output_errors, partial_path, remove_tree
from vimscope.writers.chunkio import ChunkArray, ChunkIO, remove_partials
from vimscope.writers.pyramid import (
    build_levels,
    build_region,
    default_levels,
    downsample_mean,
    downsample_mode,
    level_shapes,
)

NAMES = ("image", "classes", "nuclei", "probabilities", "features")
RECORD_FILE = ".vimscope_done.json"
FORMAT_VERSION = 1


def register_codecs() -> None:
    """Make the imagecodecs JPEG codec known to numcodecs; readers of the image copy need it too."""
    import imagecodecs.numcodecs

    imagecodecs.numcodecs.register_codecs(["imagecodecs_jpeg"], verbose=False)


@dataclass
class _Group:
    """One multiscale array family inside the store."""

    name: str
    path: str  # inside the store, "" for the root
    dtype: str
    channels: int | None  # None: a (y, x) label map
    stride: int  # output pixels per element of level 0
    chunk: int  # spatial chunk in elements
    shapes: list[tuple[int, int]]  # (h, w) per level
    is_label: bool
    compressor: object

    def level_shape(self, level: int) -> tuple[int, ...]:
        h, w = self.shapes[level]
        return (h, w) if self.channels is None else (self.channels, h, w)

    def chunks(self) -> tuple[int, ...]:
        c = self.chunk
        if self.channels is None:
            return (c, c)
        # the image copy is JPEG-coded plane by plane; other channel stacks keep a pixel's vector in one chunk
        return (1, c, c) if self.name == "image" else (self.channels, c, c)

    def array_path(self, level: int) -> str:
        return f"{self.path}/{level}" if self.path else str(level)


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
        features: int | None = None,
        feature_stride: int = 16,
        instances: bool = False,
        chunk: int = 512,
        levels: int | None = None,
        metadata: dict | None = None,
        unit: str | None = "micrometer",
        image_codec: str = "jpeg",
        jpeg_quality: int = 90,
        pyramid: str = "post",
        resume: bool = False,
        io_threads: int | None = None,
    ) -> None:
        if pyramid not in ("post", "incremental"):
            raise ValueError(f"pyramid must be 'post' or 'incremental', not {pyramid!r}")
        if image_codec not in ("jpeg", "blosc"):
            raise ValueError(f"image_codec must be 'jpeg' or 'blosc', not {image_codec!r}")
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
        self._groups = self._plan_groups(
            image_channels if image else None,
            probabilities,
            features,
            feature_stride,
            instances,
            image_codec,
            jpeg_quality,
        )
        self.probability_names = probability_names or (
            [_name(c) for c in self.classes] if probabilities == len(self.classes) else None
        )
        self._layout = self._layout_record()
        with output_errors(self.final_path, self.partial_path):
            self.resumed = resume and self._layout_matches()
            if not self.resumed:
                self._create()
            self._open()
        if self.resumed and pyramid == "incremental":
            # what an interrupted run wrote may still lack its coarser levels (flushes wait for final rows)
            for name, g in self._groups.items():
                h, w = g.shapes[0]
                self._dirty[name] = [(0, Box(0, 0, w, h))]

    # ---- layout ------------------------------------------------------------------------------------------------
    def _plan_groups(self, image_channels, probabilities, features, stride, instances, codec, quality):
        import numcodecs

        # zstd level 1: on model maps 2-2.5x faster to code than level 3 for 15-20 % more bytes
        lossless = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
        shapes = level_shapes(self.out_shape, self.levels)
        label_root = "labels/" if self.image else ""
        groups = {}
        if image_channels:
            if codec == "jpeg":
                register_codecs()
                import imagecodecs.numcodecs as icn

                comp = icn.Jpeg(level=int(quality))
            else:
                comp = lossless
            groups["image"] = _Group("image", "", "uint8", image_channels, 1, self.chunk, shapes, False, comp)
        groups["classes"] = _Group(
            "classes", label_root + "classes", "uint8", None, 1, self.chunk, shapes, True, lossless
        )
        if instances:
            groups["nuclei"] = _Group(
                "nuclei", label_root + "nuclei", "uint32", None, 1, self.chunk, shapes, True, lossless
            )
        if probabilities:
            groups["probabilities"] = _Group(
                "probabilities", "probabilities", "uint8", int(probabilities), 1, self.chunk, shapes, False, lossless
            )
        if features:
            grid = (math.ceil(self.out_shape[0] / stride), math.ceil(self.out_shape[1] / stride))
            fchunk = self.chunk // stride
            flevels = min(self.levels, default_levels(grid, fchunk))
            groups["features"] = _Group(
                "features",
                "features",
                "float16",
                int(features),
                stride,
                fchunk,
                level_shapes(grid, flevels),
                False,
                lossless,
            )
        return groups

    def _layout_record(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "out_shape": list(self.out_shape),
            "scale": self.scale,
            "chunk": self.chunk,
            "levels": self.levels,
            "groups": {
                n: {
                    "path": g.path,
                    "dtype": g.dtype,
                    "channels": g.channels,
                    "stride": g.stride,
                    "shapes": g.shapes,
                    "codec": g.compressor.get_config(),
                }
                for n, g in self._groups.items()
            },
        }

    def _layout_matches(self) -> bool:
        attrs = self.partial_path / ".zattrs"
        if not attrs.is_file():
            return False
        try:
            saved = json.loads(attrs.read_text()).get("vimscope", {}).get("layout")
        except (OSError, ValueError):
            return False
        return json.loads(json.dumps(self._layout)) == saved

    def _create(self) -> None:
        import zarr

        if self.partial_path.exists():
            remove_tree(self.partial_path)
        root = zarr.open_group(str(self.partial_path), mode="w", zarr_format=2)
        for g in self._groups.values():
            for level in range(len(g.shapes)):
                root.create_array(
                    g.array_path(level),
                    shape=g.level_shape(level),
                    chunks=g.chunks(),
                    dtype=g.dtype,
                    compressors=g.compressor,
                    fill_value=0,
                    chunk_key_encoding={"name": "v2", "separator": "/"},
                )
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
                ChunkArray(root / g.array_path(i), g.level_shape(i), g.chunks(), g.dtype, g.compressor)
                for i in range(len(g.shapes))
            ]
            for n, g in self._groups.items()
        }

    def _write_metadata(self, root, complete: bool, stats: dict | None = None) -> None:
        import zarr

        common = {"channel": False, "unit": self.unit}
        vims = {"layout": self._layout, "metadata": self.metadata, "complete": complete, "classes": self._class_list()}
        if stats is not None:
            vims["stats"] = stats
        labels = [n for n in ("classes", "nuclei") if n in self._groups]
        for name, g in self._groups.items():
            group = root if g.path == "" else zarr.open_group(store=root.store, path=g.path, mode="a", zarr_format=2)
            attrs = {}
            if name == "image":
                attrs["multiscales"] = ngff.multiscales(
                    self.final_path.name, len(g.shapes), self.scale, channel=True, unit=self.unit
                )
                names = ["red", "green", "blue"] if g.channels == 3 else [f"band {i}" for i in range(g.channels)]
                colors = ["FF0000", "00FF00", "0000FF"] if g.channels == 3 else ["FFFFFF"] * g.channels
                attrs["omero"] = ngff.omero(names, colors)
            elif g.is_label:
                attrs["multiscales"] = ngff.multiscales(name, len(g.shapes), self.scale, downscale="mode", **common)
                if name == "classes":
                    attrs["image-label"] = ngff.image_label(self.classes, source="../../" if self.image else None)
                else:
                    label = {"version": ngff.NGFF_VERSION}
                    if self.image:
                        label["source"] = {"image": "../../"}
                    attrs["image-label"] = label
            else:
                meta = {"vimscope": self.metadata} if name == "features" else {}
                attrs["multiscales"] = ngff.multiscales(
                    name, len(g.shapes), self.scale, channel=True, unit=self.unit, stride=g.stride, metadata=meta
                )
                channel_names = self.probability_names if name == "probabilities" else None
                if channel_names:
                    attrs["channel_names"] = list(channel_names)
            if g.path == "":
                attrs["vimscope"] = vims
            group.attrs.update(attrs)
        if labels:
            lab = zarr.open_group(store=root.store, path="labels", mode="a", zarr_format=2) if self.image else None
            if lab is not None:
                lab.attrs.update({"labels": labels})
        if "image" not in self._groups:
            root.attrs.update({"vimscope": vims})

    def _class_list(self) -> list[dict]:
        return [{"value": i, "name": _name(c), "color": list(_color(c))} for i, c in enumerate(self.classes)]

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
            counts[:] += np.bincount(block.ravel(), minlength=256)[:256]

        with output_errors(self.final_path, self.partial_path):
            self._drain_flushes()
            if self.pyramid == "incremental":
                self.flush()
                self._scan_level0("classes", count)
            else:
                for name in self._groups:
                    self._build_pyramid(name, None, on_level0=count if name == "classes" else None)
                if len(self._groups["classes"].shapes) == 1:
                    self._scan_level0("classes", count)
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
    def _group(self, name: str) -> _Group:
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

    def _scan_level0(self, name: str, visit) -> None:
        """Visit level 0 in chunk-aligned blocks of about 8 Mpx (bounded whatever the width)."""
        g = self._groups[name]
        arr = self._chunks[name][0]
        h, w = g.shapes[0]
        rows = g.chunk
        cols = max(g.chunk, ((8 << 20) // rows) // g.chunk * g.chunk)
        for y in range(0, h, rows):
            for x in range(0, w, cols):
                b = Box(x, y, min(cols, w - x), min(rows, h - y))
                visit(b, self._io.read(arr, b))

    def __enter__(self) -> OmeZarrWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self.committed:
            self.finalize()
            self.commit()


def _name(c) -> str:
    return str(c["name"]) if isinstance(c, dict) else str(c.name)


def _color(c) -> list[int]:
    return list(c.get("color", [255, 0, 0])) if isinstance(c, dict) else list(c.color)


def _align_to_stride(box: Box, stride: int) -> Box:
    if stride == 1:
        return box
    x0, y0 = box.x // stride * stride, box.y // stride * stride
    return Box(x0, y0, box.x1 - x0, box.y1 - y0)


__all__ = ["OmeZarrWriter", "register_codecs", "OutputError"]
