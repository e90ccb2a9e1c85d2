"""The numba CPU forward of the mixer core against the float64 reference, and the model's choice of implementation."""

from __future__ import annotations

import pytest
import torch
from vimscope_kernels import bimamba_inner
from vimscope_kernels.bimamba.cpu import bimamba_inner_cpu
from vimscope_kernels.bimamba.naive import bimamba_inner_ref


def _mixer_inputs(batch: int, length: int, channels: int, d_state: int, rank: int, seed: int = 0):
    """Random inputs in the ranges a trained Vim sees (dt bias around softplus^-1(0.01..0.1), A = -(1..N) perturbed)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    a_log = torch.log(torch.arange(1, d_state + 1.0)).repeat(channels, 1) + rnd(channels, d_state, scale=0.1)
    return [
        rnd(batch, length, 2 * channels, scale=1.0),  # xz
        rnd(channels, 1, 4),  # conv_w
        rnd(channels),
        rnd(channels, 1, 4),  # conv_w_b
        rnd(channels),
        rnd(rank + 2 * d_state, channels),  # x_proj_w
        rnd(rank + 2 * d_state, channels),
        rnd(channels, rank),  # dt_proj_w
        rnd(channels, rank),
        rnd(channels) - 3.0,  # dt_bias
        rnd(channels),  # dt_bias_b (official init: zero)
        a_log,
        a_log.flip(0),
        1.0 + rnd(channels),  # D
        1.0 + rnd(channels),
    ]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize(
    "batch,length,channels,d_state",
    [(1, 1, 8, 4), (2, 63, 48, 16), (1, 127, 40, 8), (3, 17, 33, 16)],
    ids=lambda v: str(v),
)
def test_cpu_forward_matches_float64_reference(batch, length, channels, d_state):
    inputs = _mixer_inputs(batch, length, channels, d_state, rank=3)
    ref = bimamba_inner_ref(*[t.double() for t in inputs])
    out32 = bimamba_inner_cpu(*inputs)
    assert out32.dtype == torch.float32 and out32.shape == (batch, length, channels)
    assert _rel(out32, ref) < 2e-6
    out64 = bimamba_inner_cpu(*[t.double() for t in inputs])
    assert out64.dtype == torch.float64
    assert _rel(out64, ref) < 1e-12


def test_cpu_forward_accepts_a_strided_xz_and_bf16():
    inputs = _mixer_inputs(2, 31, 16, 4, rank=2, seed=1)
    wide = torch.randn(2, 31, 64)
    wide[..., 8:40] = inputs[0]
    strided = wide[..., 8:40]  # a non-contiguous view, as a slice of a larger activation would be
    assert not strided.is_contiguous()
    ref = bimamba_inner_ref(*[t.double() for t in inputs])
    assert _rel(bimamba_inner_cpu(strided, *inputs[1:]), ref) < 2e-6
    out_bf16 = bimamba_inner_cpu(inputs[0].bfloat16(), *inputs[1:])
    assert out_bf16.dtype == torch.bfloat16
    assert _rel(out_bf16, ref) < 2e-2


def test_cpu_forward_rejects_malformed_input():
    inputs = _mixer_inputs(1, 5, 8, 4, rank=1)
    with pytest.raises(ValueError, match=r"\(B, L, 2E\)"):
        bimamba_inner_cpu(inputs[0][..., :-1], *inputs[1:])
    with pytest.raises(ValueError, match="A_log"):
        bimamba_inner_cpu(torch.randn(1, 5, 18), *inputs[1:])


def test_dispatcher_uses_the_fast_path_without_grad_and_the_reference_with_grad():
    """On CPU tensors the kernel package's op picks the numba forward, or the autograd reference for training."""
    inputs = _mixer_inputs(1, 9, 8, 4, rank=1)
    with torch.no_grad():
        fast = bimamba_inner(*inputs)
    xz = inputs[0].clone().requires_grad_(True)
    slow = bimamba_inner(xz, *inputs[1:])
    assert slow.grad_fn is not None and fast.grad_fn is None
    assert _rel(fast, slow.detach()) < 2e-6
    slow.sum().backward()
    assert xz.grad is not None and torch.isfinite(xz.grad).all()


def test_scan_decay_polynomial_matches_exp2_over_its_range():
    """The float32 2**x of the CPU scan (x <= 0, the decay 2**(delta * A log2 e)) against numpy in float64."""
    import numba
    import numpy as np
    from vimscope_kernels.bimamba.cpu import _exp2f_nonpositive

    @numba.njit
    def exp2_all(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = _exp2f_nonpositive(x[i])
        return out

    x = -np.concatenate([np.linspace(0, 1, 4097), np.geomspace(1e-6, 120, 4097)]).astype(np.float32)
    ref = np.exp2(x.astype(np.float64))
    assert np.max(np.abs(exp2_all(x) - ref) / ref) < 3e-7
