"""The sequential inference kernel of the bidirectional mixer (``bimamba_inner`` without gradients) against the
float64 reference: odd lengths (the middle step where both directions meet), chunks (the state pass, the
combine and entering states), ragged channel blocks, N and R below 16, each direction alone and both together.

On a machine without a GPU these run through Triton's interpreter (root conftest.py sets TRITON_INTERPRET=1).
"""

from __future__ import annotations

import pytest
import torch

from tests.kernels.helpers import DTYPE_NAMES, TOLERANCE, compare, rel_err, vim_params

CASES = [
    # (B, L, E, N, R, chunk_len, seq_block_e, silent, dtype)
    (1, 1, 8, 4, 2, None, 16, "", torch.float32),
    (2, 2, 16, 16, 4, None, 16, "", torch.float32),
    (2, 63, 12, 6, 3, None, 16, "", torch.float32),
    (1, 64, 20, 16, 12, None, 16, "bwd", torch.float32),
    (1, 37, 20, 16, 12, None, 16, "fwd", torch.float32),
    (2, 37, 12, 6, 3, 8, 16, "", torch.float32),
    (1, 50, 16, 8, 5, 16, 16, "fwd", torch.float32),
    (1, 50, 16, 8, 5, 7, 16, "bwd", torch.float32),
    (2, 33, 12, 6, 3, 10, 16, "", torch.bfloat16),
    (1, 40, 40, 16, 8, None, 32, "", torch.bfloat16),
]


def _id(case) -> str:
    b, length, e, n, r, chunk, be, silent, dtype = case
    who = {"": "both", "fwd": "bwd-only", "bwd": "fwd-only"}[silent]
    return f"B{b}-L{length}-E{e}-N{n}-R{r}-c{chunk or 'L'}-be{be}-{who}-{DTYPE_NAMES[dtype]}"


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Every buffer the kernels must fill starts as NaN, so an unwritten element fails the comparison."""
    from vimscope_kernels.common import config

    monkeypatch.setattr(config, "POISON_OUTPUTS", True)


def _run(case, device="cpu"):
    import vimscope_kernels
    from vimscope_kernels.bimamba.naive import bimamba_inner_ref

    batch, length, channels, n_state, rank, chunk, block_e, silent, dtype = case
    params = vim_params(channels, n_state, rank, seed=length, silent=silent)
    g = torch.Generator().manual_seed(length + channels)
    xz = torch.randn(batch, length, 2 * channels, generator=g, dtype=torch.float64).to(dtype)
    ref = bimamba_inner_ref(xz.double(), *params.values())
    with torch.no_grad():
        y = vimscope_kernels.bimamba_inner(
            xz.to(device),
            *(p.float().to(device) for p in params.values()),
            backend="triton",
            seq_fwd=True,
            seq_chunk_len=chunk,
            seq_block_e=block_e,
        )
    assert y.dtype == dtype and y.shape == (batch, length, channels)
    return y, ref


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_seq_kernel_matches_reference(case):
    y, ref = _run(case)
    err, floor = compare(y, ref)
    tol = TOLERANCE[case[-1]][0]
    assert err <= max(tol, 2 * floor), f"relative error {err:.2e} (tolerance {tol:.0e}, rounding floor {floor:.1e})"


def test_inference_takes_the_sequential_kernel_when_asked_and_training_does_not(monkeypatch):
    """Without gradients the sequential kernel (the default) unless seq_fwd=False asks for the training forward;
    with gradients always the autograd path (its own kernels)."""
    import vimscope_kernels
    from vimscope_kernels.bimamba import fwd

    calls = []
    monkeypatch.setattr(fwd, "bimamba_infer", lambda *a, **k: calls.append(1) or torch.zeros(1))
    params = [p.float() for p in vim_params(8, 4, 2).values()]
    xz = torch.randn(1, 5, 16)
    with torch.no_grad():
        vimscope_kernels.bimamba_inner(xz, *params, backend="triton", seq_fwd=False)
        assert calls == []
        vimscope_kernels.bimamba_inner(xz, *params, backend="triton")
    assert calls == [1]
    xz.requires_grad_()
    y = vimscope_kernels.bimamba_inner(xz, *params, backend="triton", seq_fwd=True)
    assert calls == [1] and y.requires_grad and y.shape == (1, 5, 8)


@pytest.mark.gpu
@pytest.mark.parametrize("batch,length,chunk", [(4, 4097, None), (2, 4097, 1024), (1, 16385, 2000)])
def test_seq_kernel_gpu_real_shape(batch, length, chunk):
    """vim_tiny's shapes in bf16 on the GPU (16-byte loads, prefetch) against the float64 reference."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    y, ref = _run((batch, length, 384, 16, 12, chunk, 32, "", torch.bfloat16), device="cuda")
    assert rel_err(y, ref) < 1.5e-2


def test_cached_weights_follow_in_place_changes():
    """Inference keeps the stacked weights between calls; an in-place change of a weight must reach the output."""
    import vimscope_kernels
    from vimscope_kernels.bimamba.naive import bimamba_inner_ref

    params = {k: v.float() for k, v in vim_params(8, 4, 2, seed=3).items()}
    xz = torch.randn(1, 9, 16)
    with torch.no_grad():
        first = vimscope_kernels.bimamba_inner(xz, *params.values(), backend="triton", seq_fwd=True)
        params["D"].mul_(3.0)
        params["A_b_log"].add_(0.5)
        second = vimscope_kernels.bimamba_inner(xz, *params.values(), backend="triton", seq_fwd=True)
    want = bimamba_inner_ref(xz.double(), *(p.double() for p in params.values()))
    assert rel_err(second, want) < 1e-5 and rel_err(first, want) > 1e-3
