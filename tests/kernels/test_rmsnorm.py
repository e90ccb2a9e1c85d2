"""The residual add + RMSNorm kernel against its float64 reference (through Triton's interpreter without a GPU)."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.helpers import DTYPE_NAMES, TOLERANCE, compare


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    from vimscope_kernels.common import config

    monkeypatch.setattr(config, "POISON_OUTPUTS", True)


CASES = [((2, 7, 192), True, torch.bfloat16), ((3, 5, 48), False, torch.float32), ((1, 33, 100), True, torch.float32)]


IDS = [f"{'x'.join(map(str, s))}-{'res' if r else 'first'}-{DTYPE_NAMES[d]}" for s, r, d in CASES]


@pytest.mark.parametrize("shape,with_residual,dtype", CASES, ids=IDS)
def test_add_rmsnorm_matches_reference(shape, with_residual, dtype):
    from vimscope_kernels import add_rmsnorm
    from vimscope_kernels.rmsnorm.naive import add_rmsnorm_ref

    g = torch.Generator().manual_seed(sum(shape))
    hidden = torch.randn(*shape, generator=g).to(dtype)
    residual = torch.randn(*shape, generator=g) * 3 if with_residual else None
    weight = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(dtype)
    y, r = add_rmsnorm(hidden, residual, weight, 1e-5, backend="triton")
    y_ref, r_ref = add_rmsnorm_ref(
        hidden.double(), None if residual is None else residual.double(), weight.double(), 1e-5
    )
    assert y.dtype == dtype and r.dtype == torch.float32
    assert compare(r, r_ref)[0] < 1e-6
    err, floor = compare(y, y_ref)
    assert err <= max(TOLERANCE[dtype][0], 2 * floor)


def test_add_rmsnorm_with_gradients_takes_the_reference():
    from vimscope_kernels import add_rmsnorm

    hidden = torch.randn(2, 3, 8, requires_grad=True)
    y, r = add_rmsnorm(hidden, None, torch.ones(8), 1e-5)
    (y.sum() + r.sum()).backward()
    assert hidden.grad is not None and hidden.grad.shape == hidden.shape


def test_default_backend_follows_the_launch_table_on_cuda_only(monkeypatch):
    """backend=None: the reference off CUDA whatever the table says (no interpreter launch on CPU tensors)."""
    from vimscope_kernels import add_rmsnorm
    from vimscope_kernels.common import config
    from vimscope_kernels.rmsnorm import function

    monkeypatch.setitem(config.DEFAULTS, "triton_rmsnorm", True)
    calls = []
    monkeypatch.setattr(function, "add_rmsnorm_ref", lambda *a: calls.append(a) or (a[0], a[0]))
    add_rmsnorm(torch.randn(2, 3, 8), None, torch.ones(8), 1e-5)
    assert len(calls) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_default_cuda_path_matches_reference_at_vim_tiny_shape(dtype):
    """What a vim_tiny block runs on CUDA without gradients (the default backend): batch 64 x 4,097 tokens x 192."""
    from vimscope_kernels import add_rmsnorm
    from vimscope_kernels.rmsnorm.naive import add_rmsnorm_ref

    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(64, 4097, 192, device="cuda", generator=g).to(dtype)
    residual = torch.randn(64, 4097, 192, device="cuda", generator=g) * 3
    weight = (1 + 0.1 * torch.randn(192, device="cuda", generator=g)).to(dtype)
    with torch.inference_mode():
        y, r = add_rmsnorm(hidden, residual, weight, 1e-5)
    y_ref, r_ref = add_rmsnorm_ref(hidden.double(), residual.double(), weight.double(), 1e-5)
    assert y.dtype == dtype and r.dtype == torch.float32
    assert compare(r, r_ref)[0] < 1e-6
    err, floor = compare(y, y_ref)
    assert err <= max(TOLERANCE[dtype][0], 2 * floor)
