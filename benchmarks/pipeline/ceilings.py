"""The ceilings an end-to-end pipeline run is measured against (see ``benchmarks.pipeline.throughput``).

decode-alone: the pipeline's loaders with no model; raw decode: the JPEG decoders alone on the level's tiles;
model-alone: the model step as the tile loop runs it, on random tiles already on the device; ``NullModel``: the
default model's IO contract with no compute, for host-alone. Rates are output megapixels per second (tile cores at
the processing resolution), so every stage is in one unit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

import torch

from vimscope.types import Box


# --- small helpers ---------------------------------------------------------------------------------------------
def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mpx(area: float, seconds: float) -> float | None:
    return round(area / 1e6 / seconds, 2) if seconds > 0 and area else None


def core_area(plan, tiles) -> int:
    return int(sum(plan.tiles[t].box.area for t in tiles))


# --- decode-alone ----------------------------------------------------------------------------------------------
def loader_for(path_name, reader, plan, batches, device, spec, workers):
    from vimscope.tiling.jpegloader import CpuDecoder, JpegTileLoader, NvjpegDecoder, tile_level
    from vimscope.tiling.loader import TileLoader

    common = dict(workers=workers, prefetch=2, pad=spec.pad_fill, pad_value=255, damaged_value=255)
    if path_name == "reader":
        return TileLoader(reader, plan, batches, channels=3, **common)
    level, why = tile_level(reader, plan)
    if level is None:
        return why
    decoder = NvjpegDecoder(device) if path_name == "nvjpeg" else CpuDecoder(device)
    return JpegTileLoader(level, plan, batches, device=device, decoder=decoder, **common)


def decode_alone(path_name, reader, plan, device, spec, batch_size, workers, cap) -> dict:
    from vimscope.tiling.jpegloader import nvjpeg_unavailable
    from vimscope.tiling.loader import batches_in_order

    if path_name == "nvjpeg" and nvjpeg_unavailable(device):
        return {"skipped": nvjpeg_unavailable(device)}
    batches = batches_in_order(range(len(plan.tiles)), batch_size)
    loader = loader_for(path_name, reader, plan, batches, device, spec, workers)
    if isinstance(loader, str):
        return {"skipped": loader}
    reset_peak_rss()
    done, t0 = [], time.perf_counter()
    with contextlib.closing(iter(loader)) as stream:
        for batch in stream:
            batch.to_device(device, spec.mean, spec.std)
            loader.recycle(batch)
            done += batch.tiles
            if time.perf_counter() - t0 > cap:
                break
    sync(device)
    seconds = time.perf_counter() - t0
    out = {"mpx_s": mpx(core_area(plan, done), seconds), "tiles": len(done), "seconds": round(seconds, 2)}
    out["peak_rss_mb"] = peak_rss_mb()
    if hasattr(loader, "decoded_tiles"):
        out.update(decoded_tiff_tiles=loader.decoded_tiles, peak_cached_tiles=loader.peak_cached)
    return out


def raw_decode(reader, plan, device, workers, cap) -> dict:
    """The decoders alone on the read level's JPEG tiles: TIFF tile megapixels per second."""
    from concurrent.futures import ThreadPoolExecutor

    from vimscope.tiling.jpegloader import NvjpegDecoder, decode_cpu, nvjpeg_unavailable, tile_level

    level, why = tile_level(reader, plan)
    if level is None:
        return {"skipped": why}
    fd = level.open()
    try:
        n = min(len(level.offsets), 4096)
        streams = [level.fetch(fd, i)[0] for i in range(n)]
    finally:
        os.close(fd)
    streams = [s for s in streams if s is not None]
    px = level.tile[0] * level.tile[1]
    out = {"tile_px": list(level.tile), "tiles": len(streams)}
    with ThreadPoolExecutor(workers) as pool:
        t0, k = time.perf_counter(), 0
        while k == 0 or time.perf_counter() - t0 < cap / 2:
            list(pool.map(decode_cpu, streams))
            k += 1
        out["libjpeg_threads"] = workers
        out["libjpeg_mpx_s"] = mpx(k * len(streams) * px, time.perf_counter() - t0)
    if nvjpeg_unavailable(device) is None:
        dec = NvjpegDecoder(device)
        encoded = [dec.prepare(s) for s in streams]
        dec.decode(encoded[:8])
        sync(device)
        t0, k = time.perf_counter(), 0
        while k == 0 or time.perf_counter() - t0 < cap / 2:
            for i in range(0, len(encoded), 64):
                dec.decode(encoded[i : i + 64])
            k += 1
        sync(device)
        out["nvjpeg_mpx_s"] = mpx(k * len(streams) * px, time.perf_counter() - t0)
        out["nvjpeg_fallback"] = dec.fallback
    return out


# --- model-alone -----------------------------------------------------------------------------------------------
def model_alone(module, spec, device, batch_size, cap, precision="auto", graphs=True) -> dict:
    from vimscope.models.device import resolve_dtype
    from vimscope.pipeline.model import LoadedModel
    from vimscope.pipeline.step import ModelStep
    from vimscope.tiling.loader import TileBatch

    dtype = resolve_dtype(precision, device)
    lm = LoadedModel(module.to(device).eval(), spec, device, dtype, spec.name, [])
    tile, core = spec.tile, spec.tile - 2 * spec.halo
    gen = torch.Generator(device="cpu").manual_seed(0)
    pixels = torch.randint(0, 256, (batch_size, tile, tile, 3), dtype=torch.uint8, generator=gen).to(device)
    batch = TileBatch(list(range(batch_size)), pixels, [Box(0, 0, tile, tile)] * batch_size)

    model_step = ModelStep(lm, True, False, graphs=graphs)  # as the tile loop runs it

    def step():
        model_step(batch.to_device(device, spec.mean, spec.std))

    t_warm = time.perf_counter()
    for _ in range(3):  # kernels compiled and autotuned here
        step()
    sync(device)
    warm = time.perf_counter() - t_warm
    reset_peak_rss()
    t0, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < cap:
        step()
        n += 1
        if n % 8 == 0:
            sync(device)
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "model": spec.name,
        "tile": tile,
        "halo": spec.halo,
        "batch": batch_size,
        "dtype": str(dtype).replace("torch.", ""),
        "cuda_graph": model_step.replays > 0,
        "mpx_s": mpx(n * batch_size * core * core, seconds),
        "tiles_s": round(n * batch_size / seconds, 1),
        "ms_per_batch": round(1e3 * seconds / n, 2),
        "warmup_s": round(warm, 1),
    }


def unet_baseline():
    from vimscope.models import build_model
    from vimscope.train.config import load_train_config, resolve_spec

    config = load_train_config("nuclei_unet")
    spec = resolve_spec(config.model, tile=config.tile)
    torch.manual_seed(0)
    return build_model(spec), spec


class NullModel(torch.nn.Module):
    """The IO contract of ``spec`` with no compute: its maps are the input's channels (varied, cheap)."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = {"logits": x[:, : max(2, len(self.spec.classes))]}
        for name in (self.spec.head or {}).get("extra_maps", {}) or {}:
            maps[name] = x[:, 2:3]
        return maps
