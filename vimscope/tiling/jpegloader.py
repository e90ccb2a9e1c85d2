"""The GPU decode path of the tile loader: a JPEG-tiled level's own tiles decoded in batches (nvjpeg through
torchvision), windows assembled on the device.

It applies when the plan reads a level stored as JPEG tiles without resampling (``tile_level``; the pipeline's
``decode`` setting chooses, otherwise it keeps ``loader.TileLoader``). Tiles are decoded by nvjpeg where torchvision
has it for the model's CUDA device, else on CPU threads (``tile_decoder``). torchvision is imported only here, and
only when this path runs.

Each TIFF tile is decoded once: at the first batch whose windows touch it, and it stays on the device until the
last such batch (the plan is known in advance, so nothing is evicted early or kept late; the live set is about a
stripe's width of tiles, a few rows deep). The CPU path's reads decode every tile a window touches, each time: with
the default 256 px windows at a 192 px stride, 16 decodes of each 512 px tile (about 7 of each 240 px one).

Threads: ``workers`` threads read raw tiles (``os.pread`` on one shared descriptor), check them with
``io.jpeg.check`` (the check the CPU path makes, so both flag the same tiles) and splice their tables; one decode
thread decodes each batch's new tiles and assembles its windows on its own CUDA stream (crop, edge and padding
exactly as ``loader.read_window`` does them), handing at most ``prefetch`` batches ahead to the consumer with an
event to wait on. In a window touching a damaged tile, that tile's pixels are ``damaged_value``, the rest is
decoded, and the tile is reported (``TileBatch.damaged_areas`` / ``damaged_boxes``), as the CPU loader does.
Decoders are pluggable (``decoder``): ``NvjpegDecoder`` on the GPU, ``CpuDecoder`` (libjpeg-turbo through
imagecodecs, the library tifffile uses) on the reader threads, so the assembly runs in CI without a GPU.

nvjpeg's colours are checked once per run: the first tile it decodes is compared with the CPU decode of the same
bytes (PSNR >= 40 dB); if they differ, the run goes on decoding on the CPU threads (logged once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from vimscope.io.jpeg.tiles import JpegLevel, jpeg_level
from vimscope.tiling.loader import TileBatch, _integer_factor
from vimscope.types import Box

log = logging.getLogger("vimscope.tiling")
MIN_PSNR = 40.0  # nvjpeg against libjpeg on the same bytes: below this, nvjpeg's colours are wrong
_unavailable: dict[str, str | None] = {}


# geometry ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class WindowMap:
    """Where one window's pixels come from: level pixels ``src``, then per window row and column the ``src`` row
    and column (-1: constant padding); ``rows`` is None when the window is ``src`` itself (nothing to pad)."""

    window: Box
    src: Box
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None


def _axis(start: int, n: int, inner0: int, inner_n: int, src_n: int, mode: str) -> np.ndarray:
    before = inner0 - start
    after = n - before - inner_n
    if mode == "constant":
        idx = np.full(n, -1, np.int64)
        idx[before : before + inner_n] = np.minimum(np.arange(inner_n), src_n - 1)
        return idx
    return np.minimum(np.pad(np.arange(inner_n), (before, after), mode=mode), src_n - 1)


def window_map(window: Box, out_shape: tuple[int, int], level_size: tuple[int, int], pad: str) -> WindowMap:
    """The pixels of ``window`` (output px = level px, no resampling) as ``loader.read_window`` makes them: the
    part inside the output grid read from the level (edge-extended where the level is a pixel short), the rest
    padded by reflection (edge when the read part is one pixel thin) or a constant."""
    h, w = out_shape
    inner = window.intersect(Box(0, 0, w, h))
    lw, lh = level_size
    src = None if inner is None else Box(inner.x, inner.y, min(inner.w, lw - inner.x), min(inner.h, lh - inner.y))
    if src is None or src.w <= 0 or src.h <= 0:
        raise ValueError(f"tile window {window} reads nothing of the level ({lw} x {lh}) or output grid {w}x{h}")
    if src == window:
        return WindowMap(window, src)
    mode = "constant" if pad != "reflect" else ("reflect" if min(inner.w, inner.h) > 1 else "edge")
    rows = _axis(window.y, window.h, inner.y, inner.h, src.h, mode)
    cols = _axis(window.x, window.w, inner.x, inner.w, src.w, mode)
    return WindowMap(window, src, rows, cols)


def assemble_window(
    out: torch.Tensor, wmap: WindowMap, level: JpegLevel, tiles: Mapping[int, torch.Tensor], value: int = 0
) -> None:
    """Write one (T, T, C) window into ``out`` from decoded tiles ((C, th, tw) uint8 on ``out``'s device)."""
    src = wmap.src
    direct = wmap.rows is None
    dst = out if direct else torch.empty((src.h, src.w, out.shape[-1]), dtype=out.dtype, device=out.device)
    for index in level.tiles_in(src):
        tb = level.tile_box(index)
        part = tb.intersect(src)
        piece = tiles[index][:, part.y - tb.y : part.y1 - tb.y, part.x - tb.x : part.x1 - tb.x]
        dst[part.y - src.y : part.y1 - src.y, part.x - src.x : part.x1 - src.x] = piece.permute(1, 2, 0)
    if direct:
        return
    rows, cols, region = wmap.rows, wmap.cols, out
    if (rows < 0).any() or (cols < 0).any():  # constant padding around a rectangle of read pixels
        out.fill_(value)
        r, c = np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0)
        region = out[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
        rows, cols = rows[r], cols[c]
    ri = torch.as_tensor(rows, device=out.device)
    ci = torch.as_tensor(cols, device=out.device)
    region.copy_(dst.index_select(0, ri).index_select(1, ci))


def assemble_row(
    out: torch.Tensor, slots: Sequence[int], srcs: Sequence[Box], level: JpegLevel, tiles: Mapping[int, torch.Tensor]
) -> None:
    """Write windows that lie inside the level and share their top row (``srcs``, one batch row of tiles) into
    ``out[slots]`` ((B, T, T, C)): each decoded tile is copied once into a strip, and the windows are cut from it in
    one gather. A batch of 32 windows takes ~20 device calls instead of ~130 (``assemble_window`` per window): the
    thread that does this shares the GIL with the tile loop, and on a GPU host its Python calls slowed the loop."""
    y0, h = srcs[0].y, srcs[0].h
    x0, x1 = min(b.x for b in srcs), max(b.x1 for b in srcs)
    strip = torch.empty((out.shape[-1], h, x1 - x0), dtype=out.dtype, device=out.device)
    span = Box(x0, y0, x1 - x0, h)
    needed = sorted({k for b in srcs for k in level.tiles_in(b)})  # parts of the strip no window reads stay unset
    for index in needed:
        tb = level.tile_box(index)
        part = tb.intersect(span)
        strip[:, part.y - y0 : part.y1 - y0, part.x - x0 : part.x1 - x0] = tiles[index][
            :, part.y - tb.y : part.y1 - tb.y, part.x - tb.x : part.x1 - tb.x
        ]
    w = srcs[0].w
    cols = torch.tensor([b.x - x0 for b in srcs], device=out.device)[:, None] + torch.arange(w, device=out.device)
    windows = strip[:, :, cols].permute(2, 1, 3, 0)  # (C, h, n, w) -> (n, h, w, C)
    out[torch.tensor(list(slots), device=out.device)] = windows


# decoders ------------------------------------------------------------------------------------------------------
def decode_cpu(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 of one standalone JPEG stream: imagecodecs (tifffile's libjpeg-turbo), else Pillow."""
    try:
        import imagecodecs
    except ImportError:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    return imagecodecs.jpeg8_decode(data)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


class CpuDecoder:
    """Decodes on the reader threads (``prepare``); ``decode`` only moves the pixels to ``device``."""

    name = "cpu"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def prepare(self, data: bytes) -> torch.Tensor:
        return torch.from_numpy(decode_cpu(data)).permute(2, 0, 1)  # (3, H, W) view

    def decode(self, items: Sequence[torch.Tensor]) -> list[torch.Tensor | str]:
        return [t.to(self.device) for t in items]


class NvjpegDecoder:
    """Batches of standalone JPEG streams decoded by nvjpeg (``torchvision.io.decode_jpeg(device=...)``)."""

    name = "nvjpeg"

    def __init__(self, device: torch.device | str) -> None:
        from torchvision.io import ImageReadMode, decode_jpeg  # lazily: the only torchvision import of vimscope

        self._decode_jpeg, self._rgb = decode_jpeg, ImageReadMode.RGB
        self.device = torch.device(device)
        self.checked = False
        self.fallback: str | None = None  # why the run decodes on the CPU instead
        self.tiles = {"nvjpeg": 0, "cpu": 0}

    def prepare(self, data: bytes) -> torch.Tensor:
        if self.fallback:
            return torch.from_numpy(decode_cpu(data)).permute(2, 0, 1)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)

    def _cpu(self, encoded: torch.Tensor) -> torch.Tensor | str:
        self.tiles["cpu"] += 1
        try:
            return torch.from_numpy(decode_cpu(encoded.numpy().tobytes())).permute(2, 0, 1).to(self.device)
        except Exception as e:  # what neither decoder reads is damaged
            return f"the JPEG decoders cannot read the tile ({type(e).__name__}: {e})"

    def _nvjpeg(self, encoded: list[torch.Tensor]) -> list[torch.Tensor | str]:
        try:
            out = self._decode_jpeg(encoded, mode=self._rgb, device=self.device)
        except RuntimeError:  # one unreadable stream fails the batch: decode one by one, the CPU where nvjpeg can't
            out = []
            for e in encoded:
                try:
                    out.append(self._decode_jpeg([e], mode=self._rgb, device=self.device)[0])
                except RuntimeError:
                    out.append(self._cpu(e))
        self.tiles["nvjpeg"] += len(encoded)
        return out

    def _check(self, encoded: torch.Tensor, decoded: torch.Tensor) -> None:
        self.checked = True
        reference = decode_cpu(encoded.numpy().tobytes())
        got = decoded.permute(1, 2, 0).cpu().numpy()
        value = psnr(got, reference) if got.shape == reference.shape else 0.0
        if value < MIN_PSNR:
            self.fallback = f"nvjpeg differs from libjpeg on this slide's tiles (PSNR {value:.1f} dB)"
            log.warning("%s: decoding JPEG tiles on CPU threads instead", self.fallback)

    def decode(self, items: Sequence[torch.Tensor]) -> list[torch.Tensor | str]:
        out: list = list(items)
        encoded = [i for i, t in enumerate(items) if t.dim() == 1]
        if encoded and not self.fallback:
            decoded = self._nvjpeg([items[i] for i in encoded])
            if not self.checked:
                first = next((k for k, d in enumerate(decoded) if isinstance(d, torch.Tensor)), None)
                if first is not None:
                    self._check(items[encoded[first]], decoded[first])
            if not self.fallback:
                for i, d in zip(encoded, decoded):
                    out[i] = d
                encoded = []
        for i in encoded:  # after a failed colour check
            out[i] = self._cpu(items[i])
        return [t.to(self.device) if isinstance(t, torch.Tensor) else t for t in out]


def nvjpeg_unavailable(device: torch.device | str) -> str | None:
    """None when torchvision decodes JPEG on ``device`` (tried once on a tiny image), else why not."""
    device = torch.device(device)
    key = str(device)
    if key in _unavailable:
        return _unavailable[key]
    why = None
    if device.type != "cuda" or not torch.cuda.is_available():
        why = "the model does not run on a CUDA device"
    else:
        try:
            import io

            from PIL import Image
            from torchvision.io import decode_jpeg

            buf = io.BytesIO()
            Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
            out = decode_jpeg([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)], device=device)
            if tuple(out[0].shape) != (3, 16, 16):
                why = f"torchvision's GPU decoder returned {tuple(out[0].shape)} for a 16 x 16 RGB JPEG"
        except ImportError as e:
            why = f"torchvision is not installed ({e})"
        except Exception as e:
            why = f"torchvision cannot decode JPEG on {device} ({type(e).__name__}: {e})"
    _unavailable[key] = why
    return why


def tile_level(reader, plan, channels: int = 3) -> tuple[JpegLevel | None, str]:
    """(the read level's JPEG tiles, "") when this loader can read the plan (no resampling, RGB, a JPEG-tiled TIFF
    level whose tiles are exactly what the reader returns), else (None, why not)."""
    if channels != 3:
        return None, f"the model reads {channels} bands, not RGB"
    if _integer_factor(plan.level_scale) != 1:
        return None, f"the read level is resampled ({plan.level_scale:.4g} level px per output px)"
    return jpeg_level(reader, plan.read_level)


def tile_decoder(device: torch.device | str):
    """nvjpeg on a CUDA ``device`` where torchvision has it, else libjpeg-turbo on the reader threads."""
    device = torch.device(device)
    if nvjpeg_unavailable(device) is None:
        return NvjpegDecoder(device)
    return CpuDecoder(device)


# the loader ----------------------------------------------------------------------------------------------------
class JpegTileLoader:
    """Iterate ``batches`` (lists of tile indices of ``plan``) as TileBatch with pixels on ``device``, from the JPEG
    tiles of ``level`` (the plan's read level, not resampled). The same contract as ``loader.TileLoader``."""

    gather_rows = True  # windows with nothing to pad are cut a batch row at a time (``assemble_row``)

    def __init__(
        self,
        level: JpegLevel,
        plan,
        batches: Sequence[Sequence[int]],
        *,
        device: torch.device | str = "cpu",
        decoder=None,
        workers: int = 4,
        prefetch: int = 2,
        pad: str = "reflect",
        pad_value: int = 0,
        damaged_value: int = 255,
    ) -> None:
        if _integer_factor(plan.level_scale) != 1:
            raise ValueError("the JPEG tile loader reads without resampling (plan.level_scale must be 1)")
        self.level = level
        self.plan = plan
        self.batches = [list(b) for b in batches]
        self.device = torch.device(device)
        self.decoder = decoder if decoder is not None else CpuDecoder(self.device)
        self.workers = max(1, int(workers))
        self.prefetch = max(1, int(prefetch))
        self.pad_value = pad_value
        self.damaged_value = damaged_value
        self.tile = plan.tile
        out_shape = tuple(plan.out_shape)
        self.maps: dict[int, WindowMap] = {}
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for b, batch in enumerate(self.batches):
            for t in batch:
                rb = plan.tiles[t].read_box
                m = self.maps[t] = window_map(Box(rb.x, rb.y, self.tile, self.tile), out_shape, level.size, pad)
                for index in level.tiles_in(m.src):
                    first.setdefault(index, b)
                    last[index] = b
        self.new: list[list[int]] = [[] for _ in self.batches]  # tiles decoded before batch b
        self.drop: list[list[int]] = [[] for _ in self.batches]  # tiles no batch after b needs
        for index, b in first.items():
            self.new[b].append(index)
        for index, b in last.items():
            self.drop[b].append(index)
        self.decoded_tiles = 0
        self.peak_cached = 0

    @property
    def decode(self) -> str:
        """What decoded the tiles: "nvjpeg", or "cpu-tiles" (libjpeg-turbo on the reader threads)."""
        d = self.decoder
        return "nvjpeg" if d.name == "nvjpeg" and not getattr(d, "fallback", None) else "cpu-tiles"

    def recycle(self, batch: TileBatch) -> None:
        """Nothing to give back: batches are fresh device tensors (the ``TileLoader`` interface)."""

    def _fetch(self, fd: int, index: int):
        data, problem = self.level.fetch(fd, index)
        if problem:
            return problem
        try:
            return self.decoder.prepare(data)
        except Exception as e:  # the CPU decoder refused a stream that passed the check
            return f"the JPEG decoder cannot read the tile ({type(e).__name__}: {e})"

    def _damage(self, wmap: WindowMap, problems: list[str]) -> str:
        return (
            f"{self.level.label}: {len(problems)} damaged tile(s) in {wmap.src.to_list()} at level "
            f"{self.level.level}: {problems[0]}"
        )

    def _around_damage(self, out: torch.Tensor, wmap: WindowMap, cache: dict) -> tuple[list, list[Box]]:
        """Assemble a window whose damaged tiles are ``damaged_value`` and the rest decoded; (damaged areas,
        damaged pixel boxes in window coordinates: the bounding box of each damaged tile's rows and columns)."""
        from vimscope.io.damage import DamagedArea, level0_box

        th, tw = self.level.tile[1], self.level.tile[0]
        fill = torch.full((3, th, tw), self.damaged_value, dtype=torch.uint8, device=out.device)
        view = {k: fill if isinstance(cache[k], str) else cache[k] for k in self.level.tiles_in(wmap.src)}
        assemble_window(out, wmap, self.level, view, self.pad_value)
        lw, lh = self.level.size
        size0 = (round(lw * self.plan.scale), round(lh * self.plan.scale))
        areas, boxes = [], []
        for k in self.level.tiles_in(wmap.src):
            if not isinstance(cache[k], str):
                continue
            tb = self.level.tile_box(k)
            tb = Box(tb.x, tb.y, min(tb.w, lw - tb.x), min(tb.h, lh - tb.y))
            areas.append(DamagedArea(self.level.level, tb, level0_box(tb, self.plan.scale, size0), cache[k]))
            part = tb.intersect(wmap.src)
            rows = np.arange(wmap.window.h) if wmap.rows is None else wmap.rows  # window row -> src row
            cols = np.arange(wmap.window.w) if wmap.cols is None else wmap.cols
            r = np.flatnonzero((rows >= part.y - wmap.src.y) & (rows < part.y1 - wmap.src.y))
            c = np.flatnonzero((cols >= part.x - wmap.src.x) & (cols < part.x1 - wmap.src.x))
            if r.size and c.size:
                boxes.append(Box(int(c[0]), int(r[0]), int(c[-1] - c[0] + 1), int(r[-1] - r[0] + 1)))
        return areas, boxes

    def _assemble(self, b: int, cache: dict) -> TileBatch:
        tiles = self.batches[b]
        pixels = torch.empty((len(tiles), self.tile, self.tile, 3), dtype=torch.uint8, device=self.device)
        damaged, areas, boxes = {}, {}, {}
        rows: dict[int, list[tuple[int, Box]]] = {}  # windows with nothing to pad, by their top row
        for i, t in enumerate(tiles):
            m = self.maps[t]
            problems = [cache[k] for k in self.level.tiles_in(m.src) if isinstance(cache[k], str)]
            if problems:  # the damaged tiles cost their own pixels; the rest of the window is decoded
                areas[t], boxes[t] = self._around_damage(pixels[i], m, cache)
                damaged[t] = self._damage(m, problems)
            elif m.rows is None and self.gather_rows:
                rows.setdefault(m.src.y, []).append((i, m.src))
            else:
                assemble_window(pixels[i], m, self.level, cache, self.pad_value)
        for row in rows.values():
            assemble_row(pixels, [i for i, _ in row], [src for _, src in row], self.level, cache)
        windows = [self.maps[t].window for t in tiles]
        return TileBatch(tiles, pixels, windows, damaged=damaged, damaged_areas=areas, damaged_boxes=boxes)

    def _produce(self, fd: int, pool: ThreadPoolExecutor, ready: queue.Queue, stop: threading.Event) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            cuda = self.device.type == "cuda"
            stream = torch.cuda.Stream(self.device) if cuda else None
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                cache: dict[int, torch.Tensor | str] = {}
                ahead: deque[dict] = deque()
                submitted = 0
                for b in range(len(self.batches)):
                    while submitted < len(self.batches) and submitted <= b + self.prefetch:
                        ahead.append({k: pool.submit(self._fetch, fd, k) for k in self.new[submitted]})
                        submitted += 1
                    items = {k: f.result() for k, f in ahead.popleft().items()}
                    if stop.is_set():
                        return
                    good = [k for k, v in items.items() if not isinstance(v, str)]
                    for k, v in zip(good, self.decoder.decode([items[k] for k in good])):
                        if isinstance(v, torch.Tensor) and tuple(v.shape[-2:]) != self.level.tile[::-1]:
                            v = f"the tile decodes to {tuple(v.shape[-2:])} px, not {self.level.tile[::-1]}"
                        cache[k] = v
                    cache.update({k: v for k, v in items.items() if isinstance(v, str)})
                    self.decoded_tiles += len(good)
                    self.peak_cached = max(self.peak_cached, len(cache))
                    batch = self._assemble(b, cache)
                    event = None
                    if cuda:
                        event = torch.cuda.Event()
                        event.record(stream)
                    for k in self.drop[b]:
                        cache.pop(k, None)
                    if not put((batch, event)):
                        return
            put(None)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)

    def __iter__(self) -> Iterator[TileBatch]:
        fd = self.level.open()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="vimscope-jpeg")
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        producer = threading.Thread(target=self._produce, args=(fd, pool, ready, stop), name="vimscope-decode")
        producer.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch, event = item
                if event is not None:  # the consumer's stream waits for the decode stream, not the host
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    batch.pixels.record_stream(current)
                yield batch
        finally:
            stop.set()
            while producer.is_alive():
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)
            producer.join()
            pool.shutdown(wait=True, cancel_futures=True)
            os.close(fd)


__all__ = [
    "JpegTileLoader",
    "NvjpegDecoder",
    "CpuDecoder",
    "WindowMap",
    "window_map",
    "assemble_window",
    "tile_level",
    "tile_decoder",
    "nvjpeg_unavailable",
    "decode_cpu",
    "psnr",
]
