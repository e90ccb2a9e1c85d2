"""Flat memory: the peak RSS of a run does not grow with the slide (4k x 4k vs 4k x 128k, stripes and bands).

Each run happens in a fresh process that reports its own peak RSS (``resource.getrusage``). The slides are deflate
tiled TIFFs generated once into the pytest cache (one pre-compressed tile repeated: seconds, a few MB). The 4k x 4k
run covers the whole slide; the 4k x 128k run covers as many tiles, spread over eight regions along the slide's
whole width so that they cross every stripe, yet it writes a 512-megapixel output: a whole-slide buffer anywhere
(a uint8 class map alone is 512 MB) would show.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from vimscope.types import Box

SIZE = 4096
LONG = 128 * 1024

SETTINGS = dict(
    model="vim_test_pointwise",
    device="cpu",
    tile=1024,
    halo=16,
    batch_size=2,
    tissue=False,
    outputs=["classes", "probabilities"],
    workers=2,
    prefetch=2,
)

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from vimscope.pipeline import PipelineConfig, run
    from vimscope.types import Box
    slide, out, settings, region = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    region = [Box(*b) for b in region] if region else None
    result = run(slide, PipelineConfig.load(**settings), out=out, region=region)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"peak_mb": usage.ru_maxrss / 1024.0, "cpu_s": cpu, "summary": result.summary}))
    """
)


def flat_slide(path: Path, height: int, width: int, tile: int = 512) -> Path:
    """A deflate-tiled RGB TIFF of one gradient tile repeated, written from pre-compressed bytes."""
    import tifffile

    if path.exists():
        return path
    x = np.arange(tile)
    row = np.stack([x * 255 // (tile - 1), 255 - x * 255 // (tile - 1), (x * 7) % 256], -1).astype(np.uint8)
    data = zlib.compress(np.ascontiguousarray(np.broadcast_to(row, (tile, tile, 3))).tobytes(), 1)
    n = -(-height // tile) * -(-width // tile)
    part = path.with_name(path.name + ".part")
    tifffile.imwrite(
        part,
        (data for _ in range(n)),
        shape=(height, width, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        photometric="rgb",
        compression="zlib",
        bigtiff=True,
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
    part.rename(path)
    return path


def measure(slide: Path, out: Path, region=None, **settings) -> dict:
    args = [sys.executable, "-c", CHILD, str(slide), str(out), json.dumps(SETTINGS | settings), json.dumps(region)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("stripe_width", [16 * 1024, 128 * 1024], ids=["stripes", "one-stripe"])
def test_peak_memory_does_not_grow_with_the_slide(slide_cache, tmp_path, stripe_width):
    square = flat_slide(slide_cache / "flat-4k-4k.tif", SIZE, SIZE)
    long = flat_slide(slide_cache / "flat-4k-128k.tif", SIZE, LONG)
    small = measure(square, tmp_path / "square", stripe_width=stripe_width)
    # eight regions of 3 x 1 tiles (core 992), each across a border of 16 cores (a stripe's with 16k stripes): as
    # many tiles as the square run, spread over the whole 128k width (with one stripe: bands of the whole width)
    core = 1024 - 2 * 16
    region = [Box((16 * (s + 1) - 1) * core, (s % 4) * core, 3 * core, core).to_list() for s in range(8)]
    large = measure(long, tmp_path / "long", region, stripe_width=stripe_width)

    assert small["summary"]["out_shape"] == [SIZE, SIZE]
    assert large["summary"]["out_shape"] == [SIZE, LONG]
    assert small["summary"]["tiles"]["run"] == 25 and large["summary"]["tiles"]["run"] == 24
    growth = large["peak_mb"] - small["peak_mb"]
    print(
        f"peak RSS: 4k x 4k {small['peak_mb']:.0f} MB ({small['cpu_s']:.1f} s CPU), "
        f"4k x 128k {large['peak_mb']:.0f} MB ({large['cpu_s']:.1f} s CPU), growth {growth:.0f} MB"
    )
    assert growth < 200, (small["peak_mb"], large["peak_mb"])
