"""Whole chunks of Zarr v2 arrays on a local disk, coded and written by a few threads, without zarr's machinery.

zarr-python 3 runs every read and write through an asyncio loop in another thread, so one chunk costs several
thread hand-offs; while other Python threads run (tile readers, the model, post-processing) each hand-off may
wait for the GIL's switch interval. Measured on 2 cores with one busy Python thread beside it: writing a 4096²
nuclei store took 3x its CPU time in wall time. Here a chunk is coded with the array's own numcodecs codec and
written atomically (temporary name, then rename), the bytes zarr writes (a test checks it): the edge chunk padded
with the fill value, a chunk of nothing but the fill value not stored (and any old file removed), keys
``<c>/<y>/<x>`` ("/" separator). Codecs (blosc, JPEG) and file IO release the GIL, so the threads code chunks
in parallel.

Writes are asynchronous: ``ChunkIO.write`` returns once the chunks are queued (their data copied), an error
surfaces at the next call that waits (``wait``, ``read``, another write), and a read waits for the writes of the
chunks it touches. At most ``4 x threads`` chunk writes are pending at a time.

What is written is read back soon: the instance and class-region steps follow the tile loop a band behind, and
each pyramid level is made from the one below. The last chunks written to losslessly coded arrays stay in memory
(``cache_bytes``, oldest dropped first), so those reads skip the file and the codec: on an H100 host the threads
spent a third of their time reading back what they had just written. A JPEG-coded array is always read from its
file, so a resumed run reads the same pixels as an uninterrupted one; an array made with ``cache=False`` (the
image copy, read back only for its own pyramid) too, so it leaves the room to the maps the later steps read.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vimscope.types import Box
from vimscope.writers.atomic import is_atomic_temp

MAX_THREADS = 8  # coding threads on a large host; half the cores (at least 2) on a smaller one
CACHE_BYTES = 1 << 30  # chunks kept in memory after they are written (lossless arrays only)
LOSSY_CODECS = {"imagecodecs_jpeg", "imagecodecs_jpeg2k", "imagecodecs_jpegxl", "imagecodecs_webp", "imagecodecs_avif"}


def default_threads() -> int:
    return max(2, min(MAX_THREADS, (os.cpu_count() or 2) // 2))


class ChunkArray:
    """Geometry and coding of one Zarr v2 array, (y, x) or (c, y, x), chunked along its last two axes (and
    ``lead_chunk`` planes at a time along the first)."""

    def __init__(self, root: Path, shape, chunks, dtype, compressor, fill_value=0, cache: bool = True) -> None:
        self.root = Path(root)
        self.shape = tuple(int(s) for s in shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.dtype = np.dtype(dtype)
        self.compressor = compressor
        self.fill = fill_value
        self.lead = self.shape[:-2]  # () or (c,)
        self.lead_chunk = self.chunks[0] if self.lead else 1
        self.cy, self.cx = self.chunks[-2:]
        self._folders: set[Path] = set()  # created already
        config = compressor.get_config() if hasattr(compressor, "get_config") else {}
        self.lossless = config.get("id") not in LOSSY_CODECS or bool(config.get("lossless"))
        self.cached = cache and self.lossless  # written chunks stay in ``ChunkIO``'s memory

    def keys(self, box: Box) -> Iterator[tuple[int, int]]:
        """(row, column) indices of the chunks ``box`` touches."""
        for ky in range(box.y // self.cy, math.ceil(box.y1 / self.cy)):
            for kx in range(box.x // self.cx, math.ceil(box.x1 / self.cx)):
                yield ky, kx

    def chunk_box(self, key: tuple[int, int]) -> Box:
        ky, kx = key
        h, w = self.shape[-2:]
        y0, x0 = ky * self.cy, kx * self.cx
        return Box(x0, y0, min(self.cx, w - x0), min(self.cy, h - y0))

    def _files(self, key: tuple[int, int]) -> list[tuple[Path, slice | None]]:
        ky, kx = key
        if not self.lead:
            return [(self.root / str(ky) / str(kx), None)]
        n = self.lead[0]
        return [
            (self.root / str(i) / str(ky) / str(kx), slice(i * self.lead_chunk, min(n, (i + 1) * self.lead_chunk)))
            for i in range(math.ceil(n / self.lead_chunk))
        ]

    def store(self, key: tuple[int, int], block: np.ndarray) -> None:
        """Code and write one chunk; ``block`` holds the chunk's (clipped) box, every leading plane."""
        for path, planes in self._files(key):
            part = block if planes is None else block[planes]
            shape = self._full_shape(planes)
            if part.shape == shape and part.flags.c_contiguous:
                full = part
            else:  # an edge chunk is stored whole, padded with the fill value
                full = np.full(shape, self.fill, self.dtype)
                full[(..., slice(0, part.shape[-2]), slice(0, part.shape[-1]))] = part
            if not (full.any() if self.fill == 0 else (full != self.fill).any()):  # zarr skips all-fill chunks
                path.unlink(missing_ok=True)
                continue
            self._mkdir(path.parent)
            _put(path, self.compressor.encode(full))

    def _mkdir(self, folder: Path) -> None:
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)

    def load(self, key: tuple[int, int]) -> np.ndarray:
        """One chunk's (clipped) box, every leading plane; the fill value where no chunk is stored."""
        box = self.chunk_box(key)
        out = np.empty((*self.lead, box.h, box.w), self.dtype)
        for path, planes in self._files(key):
            target = out if planes is None else out[planes]
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                target[...] = self.fill
                continue
            full = np.frombuffer(self.compressor.decode(raw), self.dtype).reshape(self._full_shape(planes))
            target[...] = full[..., : box.h, : box.w]
        return out

    def _full_shape(self, planes: slice | None) -> tuple[int, ...]:
        return (self.cy, self.cx) if planes is None else (self.lead_chunk, self.cy, self.cx)


def _put(path: Path, data) -> None:
    """Write ``data`` under a temporary name beside ``path`` (whose folder exists) and rename it, as zarr's local
    store does."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")  # one writer per chunk
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_partials(root: Path) -> int:
    """Delete the temporary files a killed writer left under ``root`` (chunks: ``*.partial``; metadata and the
    resume record: ``atomic_write_bytes``'s); how many. Call it only while no other process writes there (a
    resumed run, before its first write)."""
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".partial") or is_atomic_temp(name):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed


class ChunkIO:
    """A small thread pool that codes and writes chunks of ``ChunkArray``s asynchronously; see the module text.
    Safe to call from several threads (each chunk is written by one of them at a time)."""

    def __init__(self, threads: int | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        self.threads = max(1, int(threads or default_threads()))
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[tuple[int, tuple[int, int]], Future] = {}  # the last write of each chunk
        self._order: list[Future] = []  # writes not yet waited for, oldest first
        self._lock = threading.Lock()
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[tuple[ChunkArray, tuple[int, int]], np.ndarray] = OrderedDict()  # oldest first
        self._cached = 0  # bytes in _cache
        self.cache_hits = 0

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="vimscope-chunks")
            return self._pool

    # writing ----------------------------------------------------------------------------------------------------
    def write(self, array: ChunkArray, box: Box, data: np.ndarray) -> None:
        """Store ``data`` ((..., h, w), every leading plane) at ``box``: whole chunks are queued, partly covered
        chunks are read, updated and rewritten (after the queued writes of the same chunks)."""
        self._check(block=False)
        for key in array.keys(box):
            cbox = array.chunk_box(key)
            part = cbox.intersect(box)
            src = data[..., part.y - box.y : part.y1 - box.y, part.x - box.x : part.x1 - box.x]
            if part == cbox:
                block = np.array(src, dtype=array.dtype, order="C")  # a copy: the caller may reuse its array
            else:
                self.wait_keys(array, [key])
                block = self._load(array, key)
                block[..., part.y - cbox.y : part.y1 - cbox.y, part.x - cbox.x : part.x1 - cbox.x] = src
            self._submit(array, key, block)
            self._remember(array, key, block)  # never changed after this: the coding thread reads it too

    # the cache of written chunks ----------------------------------------------------------------------------------
    def _remember(self, array: ChunkArray, key: tuple[int, int], block: np.ndarray) -> None:
        tag = (array, key)  # the array itself, not its id: an id may be reused once an array is gone
        with self._lock:
            old = self._cache.pop(tag, None)
            self._cached -= old.nbytes if old is not None else 0
            if not array.cached or block.nbytes > self.cache_bytes:
                return
            self._cache[tag] = block
            self._cached += block.nbytes
            while self._cached > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cached -= dropped.nbytes

    def _load(self, array: ChunkArray, key: tuple[int, int], copy: bool = True) -> np.ndarray:
        """One chunk as ``ChunkArray.load`` gives it, from the cache when it is there: a private copy, or with
        ``copy=False`` the cached block itself, to read only (cached blocks never change)."""
        with self._lock:
            block = self._cache.get((array, key))
            if block is not None:
                self.cache_hits += 1
        if block is None:
            return array.load(key)
        return block.copy() if copy else block

    def _submit(self, array: ChunkArray, key: tuple[int, int], block: np.ndarray) -> None:
        tag = (id(array), key)
        self.wait_keys(array, [key])  # the same chunk again: keep its writes in order
        while True:  # bounded: at most 4 writes per thread queued
            with self._lock:
                self._order = [f for f in self._order if not f.done() or f.exception() is not None]
                oldest = self._order[0] if len(self._order) >= 4 * self.threads else None
            if oldest is None:
                break
            oldest.exception()  # waits; an error is raised by _check
            self._check(block=False)
        future = self._executor().submit(array.store, key, block)
        with self._lock:
            self._pending[tag] = future
            self._order.append(future)

    def _check(self, block: bool, futures: list[Future] | None = None) -> None:
        """Raise the first error among finished writes (each error once); with ``block``, wait for ``futures``
        (all queued writes when None) first."""
        with self._lock:
            todo = list(self._order) if futures is None else list(futures)
        for f in todo:
            if block:
                f.exception()
            if not f.done():
                continue
            with self._lock:
                if f not in self._order:
                    continue
                self._order.remove(f)
            error = f.exception()
            if error is not None:
                raise error

    def wait_keys(self, array: ChunkArray, keys) -> None:
        """Wait for the queued writes of these chunks."""
        with self._lock:
            futures = [f for f in (self._pending.get((id(array), k)) for k in keys) if f is not None]
        if futures:
            self._check(block=True, futures=futures)

    def wait(self) -> None:
        """Wait for every queued write; raise the first error among them."""
        self._check(block=True)
        with self._lock:
            self._pending = {k: f for k, f in self._pending.items() if not f.done()}

    # reading ----------------------------------------------------------------------------------------------------
    def read(self, array: ChunkArray, box: Box) -> np.ndarray:
        """The (..., h, w) block at ``box`` (after the queued writes of its chunks); chunks decoded in parallel."""
        keys = list(array.keys(box))
        self.wait_keys(array, keys)
        out = np.empty((*array.lead, box.h, box.w), array.dtype)

        def fill(key):
            cbox = array.chunk_box(key)
            part = cbox.intersect(box)
            chunk = self._load(array, key, copy=False)
            out[..., part.y - box.y : part.y1 - box.y, part.x - box.x : part.x1 - box.x] = chunk[
                ..., part.y - cbox.y : part.y1 - cbox.y, part.x - cbox.x : part.x1 - cbox.x
            ]

        if len(keys) == 1:
            fill(keys[0])
        else:
            for _ in self._executor().map(fill, keys):
                pass
        return out

    def close(self) -> None:
        """Wait for the queued writes and stop the threads (a later call starts them again)."""
        try:
            self.wait()
        finally:
            with self._lock:
                pool, self._pool = self._pool, None
                self._cache.clear()
                self._cached = 0
            if pool is not None:
                pool.shutdown(wait=True)
