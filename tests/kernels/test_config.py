"""Launch configuration: defaults, the tuned table, explicit overrides, validation; the per-stage callables."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.helpers import vim_params

CPU = torch.device("cpu")


def test_defaults_are_the_measured_ones():
    """Unset keys give the configuration measured on an H100 (scan_tune_h100_2026-11-26.json): the backward in
    tiles of 8 positions on 2 warps with flipped reverse scans, the forward skipping the last chunk's state."""
    from vimscope_kernels.common.config import scan_config

    cfg = scan_config(1, 16385, 384, CPU, dtype=torch.bfloat16)
    assert (cfg["block_e"], cfg["block_t"], cfg["num_warps"], cfg["num_stages"]) == (16, 16, 4, 3)
    assert (cfg["bwd_block_e"], cfg["bwd_block_t"], cfg["bwd_num_warps"], cfg["bwd_num_stages"]) == (16, 8, 2, 3)
    assert not cfg["elast"] and not cfg["bwd_elast"] and cfg["exp_poly"] == cfg["bwd_exp_poly"] == 0
    assert cfg["chunk_len"] == cfg["bwd_chunk_len"] == 32768 and cfg["n_chunks"] == 1  # CPU: one chunk
    assert not cfg["fuse_dt_proj"] and cfg["skip_last_chunk"] and cfg["bwd_skip_last_chunk"]
    assert cfg["bwd_rev_flip"] and not cfg["bwd_edot"] and cfg["tuned"] is None


def test_table_then_explicit_keys(monkeypatch):
    """A TUNED entry for the call's bucket replaces defaults; explicit keys replace both; unset bwd_* keys follow
    their forward key (not bwd_elast: the two layouts trade off differently in the backward)."""
    from vimscope_kernels.common import config

    key = ("sm90", "bf16", 512, 32768, 8)
    monkeypatch.setattr(config, "bucket", lambda *a: key)
    monkeypatch.setitem(config.TUNED, key, {"elast": True, "block_t": 2, "num_warps": 2, "exp_poly": 3})
    cfg = config.scan_config(8, 16385, 384, CPU, dtype=torch.bfloat16, block_t=4)
    assert cfg["tuned"] == key
    assert cfg["elast"] and not cfg["bwd_elast"] and cfg["block_t"] == 4 and cfg["bwd_block_t"] == 8
    assert cfg["block_e"] == 64 and cfg["bwd_block_e"] == 16  # channels-last: 32 x warps; the backward's default
    cfg = config.scan_config(8, 16385, 384, CPU, dtype=torch.bfloat16, bwd_elast=True)
    assert cfg["bwd_elast"] and cfg["bwd_block_e"] == 32 * 2  # 32 x the backward's 2 warps
    assert cfg["exp_poly"] == cfg["bwd_exp_poly"] == 3
    monkeypatch.setattr(config, "bucket", lambda *a: ("sm90", "bf16", 512, 32768, 16))
    assert not config.scan_config(8, 16385, 384, CPU, dtype=torch.bfloat16)["elast"]  # other bucket: defaults


def test_interpreter_and_cpu_never_use_the_table():
    from vimscope_kernels.common.config import bucket, interpreted

    assert bucket(8, 16385, 384, torch.bfloat16, CPU) is None
    if interpreted():
        assert bucket(8, 16385, 384, torch.bfloat16, torch.device("cuda")) is None


@pytest.mark.parametrize(
    "launch,error",
    [
        (dict(block_e=24), ValueError),
        (dict(bwd_block_t=3), ValueError),
        (dict(bwd_chunk_len=100), ValueError),
        (dict(exp_poly=-1), ValueError),
        (dict(block_size=16), TypeError),
    ],
    ids=["block_e", "bwd_block_t", "bwd_chunk_len", "exp_poly", "unknown"],
)
def test_bad_launch_keys(launch, error):
    from vimscope_kernels.common.config import scan_config

    with pytest.raises(error):
        scan_config(2, 100, 64, CPU, **launch)


def test_backward_config_has_its_own_chunks_and_tiles():
    from vimscope_kernels.common.config import backward_config, scan_config

    cfg = scan_config(2, 1000, 48, CPU, chunk_len=256, bwd_chunk_len=64, bwd_block_t=8, bwd_elast=True,
                      bwd_num_warps=1)  # fmt: skip
    b = backward_config(cfg, 48, 1000)
    assert (b["chunk_len"], b["n_chunks"], b["block_t"], b["block_e"], b["n_eblk"]) == (64, 16, 8, 32, 2)
    assert b["elast"] and not cfg["elast"] and cfg["n_chunks"] == 4


def test_stage_calls_cover_forward_and_backward():
    """The per-kernel callables benchmarks.kernels.tune_scan times: every stage runs, in launch order."""
    from vimscope_kernels.bimamba import stages
    from vimscope_kernels.common.config import scan_config

    params = [v.float() for v in vim_params(12, 6, 3).values()]
    xz, dy = torch.randn(2, 37, 24), torch.randn(2, 37, 12)
    cfg = scan_config(2, 37, 12, CPU, chunk_len=16, bwd_chunk_len=8)
    calls = stages.stage_calls(xz, params, dy, cfg)
    assert list(calls) == ["conv_xproj", "dt_gemm", "chunk_state", "combine", "scan_fwd", "bwd_dt_gemm",
                           "bwd_states", "grad_chunk_state", "grad_combine", "scan_bwd", "reduce", "conv_bwd_pre",
                           "conv_bwd_dx"]  # fmt: skip
    for fn in calls.values():
        fn()
