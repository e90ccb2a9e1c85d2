"""The CPU goal of DESIGN.md: one vim_tiny forward on a 1024 x 1024 tile in at most 10 s (float32, 2 cores).

The development and CI machines are shared, so wall time swings with other load (2x and more was seen). The
assertion uses the process's CPU time instead, which other processes barely change: a forward that uses at
most 2 x 10 core-seconds fits in 10 s on 2 idle cores. Wall time and tokens/s are printed for the record.
"""

from __future__ import annotations

import time

import pytest
import torch

from vimscope.models import create_model

GOAL_S = 10.0
CORES = 2  # the goal's machine


@pytest.fixture(scope="module")
def vim_tiny():
    torch.manual_seed(0)
    model = create_model("vim_tiny")
    with torch.inference_mode():  # compile or load the cached CPU kernels outside the timing
        model(torch.randn(1, 3, 64, 64))
    return model


@pytest.mark.slow
def test_vim_tiny_forward_on_a_1024_tile_meets_the_cpu_goal(vim_tiny):
    x = torch.randn(1, 3, 1024, 1024)
    walls, cpus = [], []
    with torch.inference_mode():
        for _ in range(2):
            wall, cpu = time.perf_counter(), time.process_time()
            out = vim_tiny(x)["features"]
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    assert out.shape == (1, 192, 64, 64) and torch.isfinite(out).all()
    print(
        f"vim_tiny 1024x1024 CPU forward: wall {min(walls):.2f} s ({(64 * 64 + 1) / min(walls):.0f} tokens/s), "
        f"CPU {min(cpus):.2f} core-s, {CORES} cores"
    )
    assert min(cpus) <= CORES * GOAL_S, cpus


@pytest.mark.slow
def test_vim_tiny_runs_a_1024_by_768_tile(vim_tiny):
    with torch.inference_mode():
        out = vim_tiny(torch.randn(1, 3, 1024, 768))["features"]
    assert out.shape == (1, 192, 64, 48) and torch.isfinite(out).all()
