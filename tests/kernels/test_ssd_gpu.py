"""The bidirectional SSD kernels on a GPU at real shapes (6 heads of 64, state 64, as vim_ssd_tiny), against
the chunked PyTorch form in float64 on the same GPU: outputs and every gradient, both chunk sizes."""

from __future__ import annotations

import pytest
import torch
from vimscope_kernels import bi_ssd

from tests.kernels.helpers import rel_err
from tests.kernels.test_ssd import INPUTS, LOW, PER_HEAD, TOL, make_inputs

pytestmark = pytest.mark.gpu


def run(inputs, grad, dtype, **kwargs):
    leaves = {
        k: v.cuda()
        .to(dtype if k in LOW else (torch.float64 if dtype == torch.float64 else torch.float32))
        .requires_grad_()
        for k, v in inputs.items()
    }
    out = bi_ssd(**leaves, **kwargs)
    out.backward(grad.cuda().to(out.dtype))
    return out, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("chunk", [64, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("batch, length", [(2, 1000), (1, 4099)], ids=["B2-L1000", "B1-L4099"])
def test_kernels_match_float64_chunked_form(batch, length, dtype, chunk):
    inputs = make_inputs(batch, length, 6, 1, headdim=64, state=64, seed=length)
    grad = torch.randn(batch, length, 6, 64, dtype=torch.float64)
    ref, ref_grads = run(inputs, grad, torch.float64, backend="torch")
    out, grads = run(inputs, grad, dtype, chunk_size=chunk)
    tol, tol_head = TOL[dtype]
    errors = {"out": rel_err(out, ref)} | {k: rel_err(grads[k], ref_grads[k]) for k in INPUTS}
    bad = {k: e for k, e in errors.items() if e > (tol_head if k in PER_HEAD else tol)}
    assert not bad, f"relative errors over tolerance: {bad} (all: {errors})"


@pytest.mark.parametrize("segments", [None, 5])
def test_forward_segments_match_on_gpu(segments, monkeypatch):
    """The segment split of the forward (None: as many as fill the GPU) gives the unsplit outputs."""
    from vimscope_kernels.ssd import function

    inputs = {k: v.cuda().to(torch.bfloat16 if k in LOW else torch.float32) for k, v in
              make_inputs(1, 8191, 6, 1, headdim=64, state=64, seed=5).items()}  # fmt: skip
    monkeypatch.setitem(function.LAUNCH, "segments", 1)
    ref = bi_ssd(**inputs, chunk_size=64)
    monkeypatch.setitem(function.LAUNCH, "segments", segments)
    assert rel_err(bi_ssd(**inputs, chunk_size=64), ref) < 1e-2


@pytest.mark.parametrize("form", ["planes", "fused"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_inference_forms_match_the_training_forward(form, dtype, monkeypatch):
    """Without gradients at a batch whose one direction fills the GPU (24 x 6 programs). float32: the training
    forward's values exactly; bf16: the planes form exactly, the fused form within bf16 rounding."""
    from vimscope_kernels.ssd import function

    monkeypatch.setitem(function.LAUNCH, "infer_form", form)
    inputs = {k: v.cuda().to(dtype if k in LOW else torch.float32) for k, v in
              make_inputs(24, 4097, 6, 1, headdim=64, state=64, seed=3).items()}  # fmt: skip
    assert 24 * 6 >= torch.cuda.get_device_properties(0).multi_processor_count
    trained = bi_ssd(**{k: v.clone().requires_grad_() for k, v in inputs.items()}).detach()
    with torch.inference_mode():
        out = bi_ssd(**inputs)
    assert out.untyped_storage().nbytes() == (2 if form == "planes" else 1) * out.nbytes
    if dtype == torch.float32 or form == "planes":
        assert torch.equal(out, trained)
    else:
        assert rel_err(out.float(), trained.float()) < 1e-2


@pytest.mark.parametrize("segments", [None, 5])
def test_fused_inference_with_segments_on_gpu(segments, monkeypatch):
    """The fused inference form split into segments (None: as many as fill the GPU; direction 1's later segments
    finish in the carry kernel) against the unsplit one."""
    from vimscope_kernels.ssd import function

    monkeypatch.setitem(function.LAUNCH, "infer_form", "fused")
    inputs = {k: v.cuda().to(torch.bfloat16 if k in LOW else torch.float32) for k, v in
              make_inputs(2, 8191, 6, 1, headdim=64, state=64, seed=6).items()}  # fmt: skip
    monkeypatch.setitem(function.LAUNCH, "segments", 1)
    with torch.inference_mode():
        ref = bi_ssd(**inputs, chunk_size=64)
        monkeypatch.setitem(function.LAUNCH, "segments", segments)
        assert rel_err(bi_ssd(**inputs, chunk_size=64), ref) < 1e-2
