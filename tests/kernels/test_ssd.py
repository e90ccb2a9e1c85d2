"""The bidirectional SSD op against its float64 quadratic-form definition: the Triton kernels (in the CPU
interpreter here, on the GPU in test_ssd_gpu.py) and the chunked PyTorch CPU path, outputs and every gradient,
at small shapes whose lengths cross chunk boundaries (odd lengths, a partial last chunk, a single token)."""

from __future__ import annotations

import pytest
import torch
from vimscope_kernels import bi_ssd
from vimscope_kernels.ssd.naive import bi_ssd_ref

from tests.kernels.helpers import DTYPE_NAMES, rel_err

# ||out - ref|| / ||ref|| per input dtype: (output and per-token gradients, gradients of per-head parameters).
# The per-head ones (A, dt_bias, D) are sums over every token whose terms cancel, so bf16 rounding of the inputs
# costs more there (D's gradient sum(dy * x) is at 2.5-3.5e-2 in the chunked PyTorch path too).
TOL = {torch.float32: (2e-5, 1e-4), torch.bfloat16: (2e-2, 4e-2)}
INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias")
PER_HEAD = ("A", "D", "dt_bias")
LOW = ("x", "dt", "B", "C", "z")  # in the tested dtype; the per-head parameters stay float32


def make_inputs(batch, length, heads, groups, headdim=16, state=16, *, seed=0) -> dict:
    """Float64 inputs at the scale of an initialised mixer (delta ~ 0.01-0.5, A in [-6, -0.5])."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return {
        "x": rnd(batch, length, heads, headdim),
        "dt": rnd(batch, length, 2, heads) - 1.0,
        "A": -(torch.rand(2, heads, generator=g, dtype=torch.float64) * 5.5 + 0.5),
        "B": rnd(batch, length, groups, state, scale=state**-0.5),
        "C": rnd(batch, length, groups, state, scale=state**-0.5),
        "D": rnd(heads),
        "z": rnd(batch, length, heads, headdim),
        "dt_bias": rnd(2, heads, scale=0.5),
    }


def run(fn, inputs: dict, grad: torch.Tensor, dtype, **kwargs) -> tuple[torch.Tensor, dict]:
    leaves = {
        k: v.to(dtype if k in LOW else (torch.float64 if dtype == torch.float64 else torch.float32))
        .clone()
        .requires_grad_()
        for k, v in inputs.items()
    }
    out = fn(**leaves, **kwargs)
    out.backward(grad.to(out.dtype))
    return out, {k: v.grad for k, v in leaves.items()}


def check(out, grads, ref, ref_grads, dtype) -> None:
    tol, tol_head = TOL[dtype]
    errors = {"out": rel_err(out, ref)} | {k: rel_err(grads[k], ref_grads[k]) for k in INPUTS}
    bad = {k: e for k, e in errors.items() if e > (tol_head if k in PER_HEAD else tol)}
    assert not bad, f"relative errors over tolerance: {bad} (all: {errors})"


# (batch, length, heads, groups, chunk): 67 = 4 full chunks of 16 + 3; 16 = exactly one; 1 token; 33 with chunk 32
CASES = [(2, 67, 3, 1, 16), (1, 16, 2, 2, 16), (1, 1, 2, 1, 16), (2, 33, 4, 2, 32)]


def case_id(case, dtype) -> str:
    b, length, h, g, q = case
    return f"B{b}-L{length}-H{h}-G{g}-Q{q}-{DTYPE_NAMES[dtype]}"


PARAMS = [pytest.param(c, d, id=case_id(c, d)) for c in CASES for d in (torch.float32, torch.bfloat16)]


@pytest.fixture(scope="module")
def references():
    """float64 output and gradients of the quadratic form, per case."""
    cache = {}

    def get(case):
        if case not in cache:
            b, length, h, g, _ = case
            inputs = make_inputs(b, length, h, g, seed=length)
            grad = torch.randn(b, length, h, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            out, grads = run(bi_ssd_ref, inputs, grad, torch.float64)
            cache[case] = inputs, grad, out.detach(), grads
        return cache[case]

    return get


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_triton_matches_definition(case, dtype, references):
    inputs, grad, ref, ref_grads = references(case)
    out, grads = run(bi_ssd, inputs, grad, dtype, chunk_size=case[4], backend="triton")
    assert out.dtype == dtype and out.shape == ref.shape
    check(out, grads, ref, ref_grads, dtype)


@pytest.mark.parametrize("case, dtype", PARAMS)
def test_cpu_path_matches_definition(case, dtype, references):
    inputs, grad, ref, ref_grads = references(case)
    out, grads = run(bi_ssd, inputs, grad, dtype, chunk_size=case[4], backend="torch")
    check(out, grads, ref, ref_grads, dtype)


def test_cpu_path_float64_is_exact_across_chunk_sizes():
    inputs = make_inputs(2, 131, 4, 2, headdim=8, state=5, seed=3)
    ref = bi_ssd_ref(**inputs)
    for chunk in (7, 64, 256):
        assert rel_err(bi_ssd(**inputs, chunk_size=chunk, backend="torch"), ref) < 1e-12


@pytest.mark.parametrize("backend", ["triton", "torch", "cpu"])
def test_directions_are_causal_and_anticausal(backend):
    """A change at token k moves direction 0's output only at t >= k and direction 1's only at t <= k."""
    inputs = {k: v.float() for k, v in make_inputs(1, 40, 2, 1, seed=5).items()}
    k = 17
    for direction, changed in ((0, slice(k, None)), (1, slice(None, k + 1))):
        silent = dict(inputs, D=torch.zeros(2), z=None, dt=inputs["dt"].clone())
        silent["dt"][:, :, 1 - direction] = -60.0  # softplus(-60) ~ 1e-26: the other direction is silent
        moved = dict(silent, x=silent["x"].clone())
        moved["x"][:, k] += 1.0
        outputs = [bi_ssd(**v, chunk_size=16, backend=backend) for v in (moved, silent)]
        diff = (outputs[0] - outputs[1]).abs().sum((0, 2, 3))
        outside = torch.ones(40, dtype=torch.bool)
        outside[changed] = False
        neighbour = k + 1 if direction == 0 else k - 1
        assert diff[k] == diff.max() and diff[neighbour] > 0
        assert diff[outside].max() < 1e-6 * diff.max()


def test_strided_views_of_one_projection():
    """x, z, B, C and dt as views into one (Bt, L, 2E + 2GN + 2H + pad) tensor, as the mixer passes them (its rows
    padded to a multiple of 16 columns): the output and the gradient of that one tensor."""
    inputs = make_inputs(2, 37, 2, 1, seed=7)
    E, GN, H = 32, 16, 2
    parts = [inputs[k].flatten(2) for k in ("z", "x", "B", "C", "dt")] + [torch.zeros(2, 37, 12, dtype=torch.float64)]
    flat64 = torch.cat(parts, dim=-1).requires_grad_()
    flat = flat64.detach().float().requires_grad_()
    grad = torch.randn(2, 37, H, 16, dtype=torch.float64)

    def views(t):
        return {
            "z": t[..., :E].unflatten(-1, (H, 16)),
            "x": t[..., E : 2 * E].unflatten(-1, (H, 16)),
            "B": t[..., 2 * E : 2 * E + GN].unflatten(-1, (1, 16)),
            "C": t[..., 2 * E + GN : 2 * E + 2 * GN].unflatten(-1, (1, 16)),
            "dt": t[..., 2 * E + 2 * GN : 2 * E + 2 * GN + 2 * H].unflatten(-1, (2, H)),
        }

    params = {k: inputs[k].float() for k in ("A", "D", "dt_bias")}
    out = bi_ssd(**views(flat), **params, chunk_size=16, backend="triton")
    ref = bi_ssd_ref(**views(flat64), **{k: inputs[k] for k in params})
    out.backward(grad.float())
    ref.backward(grad)
    assert rel_err(out, ref) < TOL[torch.float32][0]
    assert rel_err(flat.grad, flat64.grad) < TOL[torch.float32][0]


@pytest.mark.parametrize("form", ["planes", "fused"])
@pytest.mark.parametrize("segments", [None, 3], ids=["whole", "segments"])
@pytest.mark.parametrize("gate", [True, False], ids=["gate", "nogate"])
def test_inference_forms_match_the_training_forward(form, segments, gate, monkeypatch):
    """Without gradients, "planes": the two directions' planes summed into plane 0 (the output needs no buffer of
    its own); "fused": direction 0 writes into the output and direction 1 finishes it there (no planes, no
    ``ssd_out`` pass; with segments, direction 1's later segments finish in the carry kernel). float32: the
    training forward's values, exactly unless the fused form is split (other order of the same sums)."""
    from vimscope_kernels.ssd import function, fwd

    monkeypatch.setitem(function.LAUNCH, "segments", segments)
    monkeypatch.setitem(function.LAUNCH, "infer_form", form)
    calls, original = [], fwd.ssd_out
    monkeypatch.setattr(fwd, "ssd_out", lambda *a, **k: calls.append(1) or original(*a, **k))
    inputs = {k: v.float() for k, v in make_inputs(2, 67, 2, 1, seed=5).items()}  # 5 chunks: 3 segments of 2, 2, 1
    if not gate:
        inputs["z"] = None
    leaves = {k: v.clone().requires_grad_() if v is not None else None for k, v in inputs.items()}
    trained = bi_ssd(**leaves, chunk_size=16, backend="triton").detach()
    with torch.inference_mode():
        out = bi_ssd(**inputs, chunk_size=16, backend="triton")
    planes = 2 if form == "planes" else 1
    assert len(calls) == planes  # the training forward's epilogue, and the planes form's
    assert out.untyped_storage().nbytes() == planes * out.nbytes
    if form == "planes" or segments is None:
        assert torch.equal(out, trained)
    else:
        assert rel_err(out, trained) < 1e-6


def test_fused_inference_in_bf16_is_within_rounding_of_the_training_forward(monkeypatch):
    """bf16: direction 1's y is added before rounding (the planes round it first): within bf16 rounding."""
    from vimscope_kernels.ssd import function

    monkeypatch.setitem(function.LAUNCH, "infer_form", "fused")
    inputs = {k: v.to(torch.bfloat16) if k in LOW else v.float() for k, v in make_inputs(2, 37, 2, 1, seed=6).items()}
    trained = bi_ssd(**{k: v.clone().requires_grad_() for k, v in inputs.items()}, chunk_size=16, backend="triton")
    with torch.inference_mode():
        out = bi_ssd(**inputs, chunk_size=16, backend="triton")
    assert rel_err(out.float(), trained.detach().float()) < 1e-2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dt": torch.zeros(1, 5, 1, 2)}, "dt must be"),
        ({"A": torch.zeros(2, 3)}, "A and dt_bias"),
        ({"B": torch.zeros(1, 5, 3, 16)}, "B and C"),
        ({"x": torch.zeros(1, 5, 2, 24)}, "powers of two"),
    ],
)
def test_bad_shapes_are_value_errors(change, message):
    inputs = {k: v.float() for k, v in make_inputs(1, 5, 2, 1).items()}
    inputs.update(change)
    if "x" in change:
        inputs["z"] = None
    with pytest.raises(ValueError, match=message):
        bi_ssd(**inputs, backend="triton")


def test_inputs_without_contiguous_rows_are_copied():
    """x and z whose (H, P) rows are not contiguous (here (Bt, H, L, P) storage) give the same result."""
    inputs = {k: v.float() for k, v in make_inputs(1, 21, 2, 1, seed=9).items()}
    ref = bi_ssd(**inputs, chunk_size=16, backend="triton")
    odd = dict(inputs)
    for k in ("x", "z"):
        odd[k] = inputs[k].transpose(1, 2).contiguous().transpose(1, 2)
        assert odd[k].stride(2) != odd[k].shape[3]
    assert torch.equal(bi_ssd(**odd, chunk_size=16, backend="triton"), ref)


@pytest.mark.parametrize("segments", [2, 3, 9])
def test_forward_split_into_segments(segments, monkeypatch):
    """Long sequences at small batch are scanned in segments whose carried states are added afterwards: the
    same outputs (9 segments for 5 chunks: one chunk each) and, through the unsplit backward, the same gradients."""
    from vimscope_kernels.ssd import function

    case = (2, 67, 3, 1, 16)
    inputs = make_inputs(*case[:4], seed=11)
    grad = torch.randn(2, 67, 3, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref, ref_grads = run(bi_ssd_ref, inputs, grad, torch.float64)
    monkeypatch.setitem(function.LAUNCH, "segments", segments)
    out, grads = run(bi_ssd, inputs, grad, torch.float32, chunk_size=16, backend="triton")
    check(out, grads, ref, ref_grads, torch.float32)
