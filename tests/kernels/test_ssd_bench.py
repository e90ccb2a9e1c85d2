"""The SSD benchmark's paths at toy sizes on the CPU (Triton interpreter for the correctness section): the JSON
it writes has the sections and fields the device run reads back."""

from __future__ import annotations

import json

from benchmarks.kernels import ssd


def test_smoke_run_writes_correctness_and_timings(tmp_path):
    out = tmp_path / "ssd.json"
    assert ssd.main(["--device", "cpu", "--smoke", "--skip", "model,profile", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["env"]["card"] == "cpu" and "mamba_chunk_scan_combined" in result["quoted_note"]
    errors = {row["dtype"]: row["rel_err"] for row in result["correct"]}
    assert errors["float32"]["out"] < 1e-5 and errors["float32"]["A"] < 1e-4
    assert errors["bfloat16"]["out"] < 2e-2 and errors["bfloat16"]["in_proj_out"] < 2e-2
    assert result["model_paths"] == {"skipped": "cpu"}  # both mixer paths are PyTorch on a CPU
    assert result["split"]["rel_err_vs_unsplit"] == 0.0  # on a CPU both forwards are the PyTorch path
    assert [(r["batch"], r["length"]) for r in result["op"]] == [(1, 100), (2, 67)], result["op"]
    assert all(r.get("fwd_ms", 0) > 0 and r.get("fwd_bwd_ms", 0) > 0 for r in result["op"]), result["op"]
    assert result["best_config"]["chunk"] == 32


def test_best_config_weighs_every_shape():
    rows = [
        {"batch": 1, "length": 8, "chunk": 64, "fwd_warps": 4, "bwd_warps": 4, "fwd_ms": 1.0, "fwd_bwd_ms": 3.0},
        {"batch": 1, "length": 8, "chunk": 128, "fwd_warps": 8, "bwd_warps": 8, "fwd_ms": 0.9, "fwd_bwd_ms": 2.9},
        {"batch": 2, "length": 8, "chunk": 64, "fwd_warps": 4, "bwd_warps": 4, "fwd_ms": 1.0, "fwd_bwd_ms": 3.0},
        {"batch": 2, "length": 8, "chunk": 128, "fwd_warps": 8, "bwd_warps": 8, "fwd_ms": 2.0, "fwd_bwd_ms": 6.0},
    ]
    assert ssd.best_config(rows) == {"chunk": 64, "fwd_warps": 4, "bwd_warps": 4, "segments": 1, "num_stages": 1}
