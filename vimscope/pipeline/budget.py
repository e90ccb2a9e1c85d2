"""How much memory a tile size and batch need, decided before the first tile: lower the batch or refuse the run.

A forward pass's peak grows with the pixels it sees (Vim is linear in its tokens, the decoder's maps are per
pixel), so the bytes per pixel are measured, not guessed: two passes on small blank inputs (``side`` and
``2 * side``) give the slope, so fixed costs drop out. CUDA's allocator reports the peak itself; on the CPU a
dispatch mode counts the bytes of live tensors (an upper bound: a tensor counts until its last reference goes).
The host also holds the loader's read-ahead (``prefetch`` + 2 batches of uint8 tiles) and the batch's uint8 maps.
Batches below ``MEASURE_ABOVE`` pixels are taken as they are: measuring costs two passes, which a small tile does
not need.
"""

from __future__ import annotations

import dataclasses
import math
import os
import weakref

MEASURE_ABOVE = 16 * 1024 * 1024  # pixels per batch (e.g. 4 tiles of 2048²) from which the need is measured
HEADROOM = 0.85  # share of the available memory a run may plan to use
# The CPU count sees torch tensors only: the process's resident memory grew by 678 B/px in a 1024² forward of
# vim_tiny_nuclei where the count said 590 (allocator slack, arrays of compiled CPU kernels). Scale it up by this.
CPU_SLACK = 1.25
GB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryNeed:
    """Bytes a run needs per tile in a batch (device: the forward pass; host: buffers and maps), plus fixed."""

    device_per_tile: float
    host_per_tile: float
    device_type: str

    def total(self, batch: int) -> tuple[float, float]:
        """(device bytes, host bytes) for ``batch`` tiles; on a CPU the device is the host."""
        device, host = self.device_per_tile * batch, self.host_per_tile * batch
        return (0.0, device + host) if self.device_type == "cpu" else (device, host)


def available_host() -> float:
    """Bytes the host can still give: MemAvailable, or less under a cgroup (container) limit."""
    free = math.inf
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    if free is math.inf:
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return float(free)


def available_device(device) -> float:
    """Free bytes on a CUDA device (``inf`` for the CPU: the host's budget applies)."""
    import torch

    if device.type != "cuda":
        return math.inf
    free, _ = torch.cuda.mem_get_info(device)
    return float(free)


def _live_bytes_mode():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        """Counts the bytes of the storages of live tensors an op returns; ``peak`` is the most at once."""

        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0
            self.refs: dict[int, int] = {}

        def _drop(self, key: int, size: int) -> None:
            self.refs[key] -= 1
            if not self.refs[key]:
                del self.refs[key]
                self.live -= size

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    key, size = storage.data_ptr(), storage.nbytes()
                    if not size:
                        continue
                    if key not in self.refs:
                        self.live += size
                        self.peak = max(self.peak, self.live)
                    self.refs[key] = self.refs.get(key, 0) + 1
                    weakref.finalize(t, self._drop, key, size)
            return out

    return LiveBytes()


def forward_peak(lm, side: int, segmentation: bool, features: bool) -> float:
    """Peak bytes of one forward pass on a blank (1, C, side, side) batch, beyond what was allocated before."""
    import torch

    from vimscope.pipeline.step import forward

    x = torch.zeros((1, lm.spec.in_chans, side, side), device=lm.device)
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)
        before = torch.cuda.memory_allocated(lm.device)
        torch.cuda.reset_peak_memory_stats(lm.device)
        forward(lm, x, segmentation, features)
        torch.cuda.synchronize(lm.device)
        return float(torch.cuda.max_memory_allocated(lm.device) - before)
    mode = _live_bytes_mode()
    with mode:
        out = forward(lm, x, segmentation, features)
    del out
    return float(mode.peak) * CPU_SLACK


_MEASURED: dict[tuple, float] = {}


def bytes_per_pixel(lm, segmentation: bool, features: bool) -> float:
    """The forward pass's peak bytes per input pixel (measured once per model, device and precision)."""
    key = (id(lm.module), str(lm.device), str(lm.dtype), segmentation, features)
    if key not in _MEASURED:
        m = max(1, lm.spec.size_multiple)
        side = max(2 * m, math.ceil(64 / m) * m)
        small = forward_peak(lm, side, segmentation, features)
        large = forward_peak(lm, 2 * side, segmentation, features)
        slope = (large - small) / (3 * side * side)
        _MEASURED[key] = slope if slope > 0 else large / (4 * side * side)
    return _MEASURED[key]


def estimate_memory(lm, tile: int, config, channels: int, segmentation: bool, features: bool) -> MemoryNeed:
    """What one tile of ``tile`` px costs: its forward pass (measured per pixel) and its host buffers."""
    pixels = tile * tile
    device = bytes_per_pixel(lm, segmentation, features) * pixels
    read_ahead = (config.prefetch + 2) * lm.spec.in_chans * pixels  # uint8 tiles queued and pinned
    maps = (3 if config.stitch == "crop" else 4 * 3) * channels * pixels  # the batch's maps on their way to disk
    return MemoryNeed(device, float(read_ahead + maps + 4 * lm.spec.in_chans * pixels), lm.device.type)


def fit_batch(config, lm, found: dict, tile: int, notes: list[str]):
    """``config`` with a batch that fits the memory there is (a note says when it was lowered); a ``ConfigError``
    when not even one tile fits."""
    from vimscope.errors import ConfigError

    batch = config.batch_size
    if batch * tile * tile < MEASURE_ABOVE:
        return config
    channels = sum(v for k, v in found.items() if k not in ("features", "feature_stride")) + 1
    need = estimate_memory(lm, tile, config, channels, "logits" in found, "features" in found)
    free_device, free_host = available_device(lm.device) * HEADROOM, available_host() * HEADROOM

    def fits(b: int) -> bool:
        device, host = need.total(b)
        return device <= free_device and host <= free_host

    if fits(batch):
        return config
    fitting = next((b for b in range(batch - 1, 0, -1) if fits(b)), 0)
    where = "GPU" if lm.device.type == "cuda" else "host"
    per_tile = sum(need.total(1)) / GB
    free = (free_device if lm.device.type == "cuda" else free_host) / HEADROOM / GB
    if not fitting:
        asked = f" (--tile {config.tile} clamped to the image)" if config.tile and config.tile != tile else ""
        raise ConfigError(
            f"a tile of {tile} px{asked} needs about {per_tile:.1f} GB of {where} memory and {free:.1f} GB are free: "
            f"use a smaller --tile (the model's is {lm.spec.tile})"
        )
    notes.append(
        f"batch lowered from {batch} to {fitting} tiles: a tile of {tile} px needs about {per_tile:.2f} GB "
        f"({where} memory free: {free:.1f} GB)"
    )
    return dataclasses.replace(config, batch_size=fitting)
