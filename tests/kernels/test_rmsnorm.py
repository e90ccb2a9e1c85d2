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


@pytest.mark.parametrize("backend", ["triton", "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_inplace_writes_the_same_values_over_the_stream(backend, dtype):
    """inplace: y lands in hidden's buffer and the new residual in residual's, with the copying path's values."""
    from vimscope_kernels import add_rmsnorm

    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 9, 48, generator=g).to(dtype)
    residual = torch.randn(2, 9, 48, generator=g) * 3
    weight = (1 + 0.1 * torch.randn(48, generator=g)).to(dtype)
    y_copy, r_copy = add_rmsnorm(hidden, residual, weight, 1e-5, backend=backend)
    h, res = hidden.clone(), residual.clone()
    y, r = add_rmsnorm(h, res, weight, 1e-5, backend=backend, inplace=True)
    assert y.data_ptr() == h.data_ptr() and r.data_ptr() == res.data_ptr()
    assert torch.equal(y, y_copy) and torch.equal(r, r_copy)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_inplace_first_block_and_mixed_dtypes(backend):
    """No residual yet: a float32 embedding becomes the residual itself (the reference's float() is no copy) and
    y gets a buffer; a hidden of another dtype than the weight: y gets a new buffer, the residual is updated."""
    from vimscope_kernels import add_rmsnorm

    hidden = torch.randn(2, 5, 16)
    weight = 1 + 0.1 * torch.randn(16)
    y_copy, _ = add_rmsnorm(hidden, None, weight, 1e-5, backend=backend)
    before = hidden.clone()
    y, r = add_rmsnorm(hidden, None, weight, 1e-5, backend=backend, inplace=True)
    assert torch.equal(r, before) and torch.equal(y, y_copy) and r.data_ptr() == hidden.data_ptr()
    bf = before.to(torch.bfloat16)
    residual = torch.randn(2, 5, 16)
    y, r = add_rmsnorm(bf, residual, weight, 1e-5, backend=backend, inplace=True)  # y float32
    assert y.dtype == torch.float32 and y.data_ptr() != bf.data_ptr() and r.data_ptr() == residual.data_ptr()


def test_inplace_is_ignored_when_gradients_are_needed():
    from vimscope_kernels import add_rmsnorm

    hidden = torch.randn(2, 3, 8, requires_grad=True)
    residual = torch.randn(2, 3, 8)
    before = residual.clone()
    y, r = add_rmsnorm(hidden, residual, torch.ones(8), 1e-5, inplace=True)
    r.sum().backward()
    assert torch.equal(residual, before) and r.data_ptr() != residual.data_ptr()
