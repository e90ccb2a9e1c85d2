"""The compiled CPU scan of the bidirectional SSD (``cpu_recurrent``, the CPU inference path) against the float64
quadratic-form definition, and the dispatch between it and the chunked PyTorch form (which autograd needs)."""

from __future__ import annotations

import pytest
import torch
from vimscope_kernels import bi_ssd
from vimscope_kernels.ssd.naive import bi_ssd_ref

from tests.kernels.helpers import DTYPE_NAMES, rel_err
from tests.kernels.test_ssd import TOL, make_inputs

pytest.importorskip("numba")

LOW = ("x", "dt", "B", "C", "z")  # in the tested dtype; the per-head parameters stay float32 (float64 for float64)
# (batch, length, heads, groups, headdim, state): odd lengths, one token, groups, sizes that are not powers of two,
# and one vim_ssd_tiny layer at 256 px (257 tokens, 6 heads of 64, state 64)
CASES = [(2, 67, 3, 1, 16, 16), (1, 1, 2, 1, 16, 16), (2, 33, 4, 2, 8, 5), (1, 257, 6, 1, 64, 64)]
DTYPES = {torch.float32: TOL[torch.float32][0], torch.bfloat16: TOL[torch.bfloat16][0], torch.float64: 1e-12}


def cast(inputs: dict, dtype) -> dict:
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    return {k: (None if v is None else v.to(dtype if k in LOW else wide)) for k, v in inputs.items()}


def case_id(case, dtype, gated) -> str:
    b, length, h, g, p, n = case
    return f"B{b}-L{length}-H{h}-G{g}-P{p}-N{n}-{DTYPE_NAMES.get(dtype, 'fp64')}" + ("" if gated else "-nogate")


PARAMS = [pytest.param(c, d, gated, id=case_id(c, d, gated)) for c in CASES for d in DTYPES for gated in (True, False)]


@pytest.mark.parametrize("case, dtype, gated", PARAMS)
def test_compiled_cpu_path_matches_definition(case, dtype, gated):
    b, length, h, g, p, n = case
    inputs = make_inputs(b, length, h, g, headdim=p, state=n, seed=length)
    if not gated:
        inputs["z"] = None
    ref = bi_ssd_ref(**inputs)
    out = bi_ssd(**cast(inputs, dtype), backend="cpu")
    assert out.dtype == dtype and out.shape == ref.shape
    assert rel_err(out, ref) < DTYPES[dtype]


def test_compiled_cpu_path_takes_strided_views_of_one_projection():
    """x, z, B, C and dt as views into one in_proj output (rows padded to 16 columns), as the mixer passes them."""
    inputs = make_inputs(2, 37, 2, 1, seed=7)
    E, GN, H = 32, 16, 2
    parts = [inputs[k].flatten(2) for k in ("z", "x", "B", "C", "dt")] + [torch.zeros(2, 37, 12, dtype=torch.float64)]
    flat = torch.cat(parts, dim=-1).float()
    views = {
        "z": flat[..., :E].unflatten(-1, (H, 16)),
        "x": flat[..., E : 2 * E].unflatten(-1, (H, 16)),
        "B": flat[..., 2 * E : 2 * E + GN].unflatten(-1, (1, 16)),
        "C": flat[..., 2 * E + GN : 2 * E + 2 * GN].unflatten(-1, (1, 16)),
        "dt": flat[..., 2 * E + 2 * GN : 2 * E + 2 * GN + 2 * H].unflatten(-1, (2, H)),
    }
    params = {k: inputs[k].float() for k in ("A", "D", "dt_bias")}
    out = bi_ssd(**views, **params, backend="cpu")
    assert rel_err(out, bi_ssd_ref(**inputs)) < TOL[torch.float32][0]


def test_dispatch_compiled_without_grad_chunked_with_grad():
    """On CPU tensors ``bi_ssd`` runs the compiled scan when no gradient is needed, the chunked form otherwise."""
    inputs = cast(make_inputs(2, 45, 2, 1, seed=2), torch.float32)
    with torch.no_grad():
        fast = bi_ssd(**inputs)
    assert torch.equal(fast, bi_ssd(**inputs, backend="cpu"))
    x = inputs["x"].clone().requires_grad_()
    slow = bi_ssd(**dict(inputs, x=x))
    assert slow.grad_fn is not None and fast.grad_fn is None
    assert torch.equal(slow.detach(), bi_ssd(**inputs, backend="torch"))
    assert rel_err(fast, slow) < TOL[torch.float32][0]
    slow.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_unknown_backend_is_a_value_error():
    inputs = cast(make_inputs(1, 5, 2, 1), torch.float32)
    with pytest.raises(ValueError, match="'cpu'"):
        bi_ssd(**inputs, backend="numba")
