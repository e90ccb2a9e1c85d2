"""The one-direction ``vimscope_kernels.selective_scan_fn`` against the float64 reference, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.helpers import DTYPE_NAMES, TOLERANCE, chunk_for, compare, failures, pairwise

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OPTIONS = {  # which optional inputs are given
    "full": dict(D=True, z=True, delta_bias=True, softplus=True),
    "bare": dict(D=False, z=False, delta_bias=False, softplus=False),
    "gate": dict(D=False, z=True, delta_bias=False, softplus=True),
}
CASES = pairwise(
    {"L": [1, 7, 63, 127], "options": list(OPTIONS), "dtype": list(DTYPES), "B": [1, 2], "shape": [(16, 16), (12, 6)]}
)
PARAMS = [(case, chunk) for case in CASES for chunk in (4, 16, "L")]


def _case_id(case, chunk) -> str:
    e, n = case["shape"]
    c = chunk_for(chunk, case["L"])
    return f"B{case['B']}-E{e}-N{n}-L{case['L']}-c{c}-{case['options']}-{case['dtype']}"


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    from vimscope_kernels.common import config

    monkeypatch.setattr(config, "POISON_OUTPUTS", True)


def make_inputs(batch, length, channels, n_state, opts, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    softplus = opts["softplus"]
    return {
        "u": rnd(batch, length, channels),
        # raw dt before softplus(dt + bias), or a small positive step when softplus is off
        "delta": rnd(batch, length, channels, scale=0.5, shift=-1.0)
        if softplus
        else rnd(batch, length, channels).abs() * 0.2,
        "A": -torch.exp(rnd(channels, n_state, scale=0.5)),
        "B": rnd(batch, length, n_state),
        "C": rnd(batch, length, n_state),
        "D": rnd(channels) if opts["D"] else None,
        "z": rnd(batch, length, channels) if opts["z"] else None,
        "delta_bias": rnd(channels, scale=0.5) if opts["delta_bias"] else None,
    }


@pytest.mark.parametrize("case,chunk", PARAMS, ids=[_case_id(c, k) for c, k in PARAMS])
def test_selective_scan_matches_reference(case, chunk):
    import vimscope_kernels
    from vimscope_kernels.selective_scan.naive import selective_scan_ref

    dtype = DTYPES[case["dtype"]]
    opts = OPTIONS[case["options"]]
    channels, n_state = case["shape"]
    inputs = make_inputs(case["B"], case["L"], channels, n_state, opts)
    ours = {k: None if v is None else v.to(dtype).requires_grad_() for k, v in inputs.items()}
    ref_in = {k: None if v is None else v.detach().double().requires_grad_() for k, v in ours.items()}
    y = vimscope_kernels.selective_scan_fn(
        **ours, softplus=opts["softplus"], chunk_len=chunk_for(chunk, case["L"]), backend="triton"
    )
    ref = selective_scan_ref(**ref_in, softplus=opts["softplus"])
    dy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y.backward(dy.to(dtype))
    ref.backward(dy.to(dtype).double())  # the same rounded upstream gradient
    errors = {"out": compare(y, ref)}
    errors.update({"d_" + k: compare(v.grad, ref_in[k].grad) for k, v in ours.items() if v is not None})
    bad = failures(errors, *TOLERANCE[dtype])
    assert not bad, f"{DTYPE_NAMES[dtype]} errors above tolerance: {bad}"


# launch switches (off by default) on the one-direction op: channels-last tiles + polynomial exp2 forward, backward
# on its own chunking (recomputed states) and tiles
SWITCHES = {
    "elast-poly1+bwd-chunk4": dict(elast=True, block_e=8, num_warps=1, exp_poly=1, bwd_chunk_len=4, bwd_block_t=2),
    "poly2-skip+bwd-elast-chunk32": dict(
        exp_poly=2, bwd_elast=True, bwd_block_e=16, bwd_num_warps=1, bwd_chunk_len=32, skip_last_chunk=True
    ),
}


@pytest.mark.parametrize("launch", list(SWITCHES.values()), ids=list(SWITCHES))
def test_selective_scan_switches_match_reference(launch):
    import vimscope_kernels
    from vimscope_kernels.selective_scan.naive import selective_scan_ref

    inputs = make_inputs(2, 37, 12, 6, OPTIONS["full"])
    ours = {k: v.float().requires_grad_() for k, v in inputs.items()}
    ref_in = {k: v.detach().double().requires_grad_() for k, v in ours.items()}
    y = vimscope_kernels.selective_scan_fn(**ours, softplus=True, chunk_len=8, backend="triton", **launch)
    ref = selective_scan_ref(**ref_in, softplus=True)
    dy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y.backward(dy.float())
    ref.backward(dy.float().double())
    errors = {"out": compare(y, ref)}
    errors.update({"d_" + k: compare(v.grad, ref_in[k].grad) for k, v in ours.items()})
    bad = failures(errors, *TOLERANCE[torch.float32])
    assert not bad, f"fp32 errors above tolerance: {bad}"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,chunk", [(torch.float32, None), (torch.bfloat16, 256)], ids=["fp32-auto", "bf16-c256"])
def test_selective_scan_gpu_real_shape(dtype, chunk):
    import vimscope_kernels
    from vimscope_kernels.selective_scan.naive import selective_scan_ref

    inputs = make_inputs(2, 1025, 384, 16, OPTIONS["full"])
    ours = {k: v.to(dtype).cuda().requires_grad_() for k, v in inputs.items()}
    ref_in = {k: v.detach().double().requires_grad_() for k, v in ours.items()}
    y = vimscope_kernels.selective_scan_fn(**ours, softplus=True, chunk_len=chunk)
    ref = selective_scan_ref(**ref_in, softplus=True)
    dy = torch.randn(ref.shape, dtype=torch.float64, device="cuda")
    y.backward(dy.to(dtype))
    ref.backward(dy.to(dtype).double())
    errors = {"out": compare(y, ref)}
    errors.update({"d_" + k: compare(v.grad, ref_in[k].grad) for k, v in ours.items()})
    assert not failures(errors, *TOLERANCE[dtype])
