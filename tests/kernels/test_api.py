"""The public surface of vimscope_kernels: lazy import, argument checks, dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.kernels.helpers import vim_params


def test_import_is_lazy():
    """Importing the package (and resolving its names) loads neither triton nor any kernel module."""
    code = (
        "import sys, vimscope_kernels as k\n"
        "import vimscope_kernels.selective_scan, vimscope_kernels.bimamba\n"
        "k.bimamba_inner; k.selective_scan_fn; k.selective_scan.selective_scan_ref; k.bimamba.bimamba_inner_ref\n"
        "print('triton' in sys.modules, any(m.endswith(('.fwd', '.bwd')) for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_selective_scan_fn_matches_reference_and_package_is_not_callable():
    import vimscope_kernels
    from vimscope_kernels.selective_scan.naive import selective_scan_ref

    u = torch.randn(1, 5, 3, dtype=torch.float64)
    delta = torch.rand(1, 5, 3, dtype=torch.float64)
    A = -torch.rand(3, 2, dtype=torch.float64)
    B, C = torch.randn(1, 5, 2, dtype=torch.float64), torch.randn(1, 5, 2, dtype=torch.float64)
    torch.testing.assert_close(
        vimscope_kernels.selective_scan_fn(u, delta, A, B, C), selective_scan_ref(u, delta, A, B, C)
    )
    assert not callable(vimscope_kernels.selective_scan)  # the op's package is a plain module


def _args(channels=8, n_state=4, rank=2, length=5):
    p = vim_params(channels, n_state, rank)
    return torch.randn(2, length, 2 * channels, dtype=torch.float64), p


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda xz, p: (xz[..., :-1], p), "xz must be"),
        (lambda xz, p: (xz[0], p), "xz must be"),
        (lambda xz, p: (xz, {**p, "A_log": p["A_log"][:, :3]}), "must have shape"),
        (lambda xz, p: (xz, {**p, "x_proj_w_b": p["x_proj_w_b"][1:]}), "x_proj_w_b must have shape"),
        (lambda xz, p: (xz, {**p, "dt_proj_w": p["dt_proj_w"][:4]}), "dt_proj_w must be"),
        (lambda xz, p: (xz, {**p, "conv_w": p["conv_w"].reshape(8, 2, 2)}), "conv_w must be"),
        (lambda xz, p: (xz, {**p, "D": p["D"][:7]}), "D must have shape"),
    ],
    ids=["odd-2E", "2d-xz", "A-vs-A_b", "x_proj_b-rows", "dt_proj-rows", "conv-shape", "D-length"],
)
def test_bimamba_inner_rejects_bad_shapes(change, match):
    import vimscope_kernels

    xz, p = change(*_args())
    with pytest.raises(ValueError, match=match):
        vimscope_kernels.bimamba_inner(xz, *p.values())


def test_bad_backend_and_chunk_len():
    import vimscope_kernels

    xz, p = _args()
    with pytest.raises(ValueError, match="backend"):
        vimscope_kernels.bimamba_inner(xz, *p.values(), backend="cuda")
    with pytest.raises(ValueError, match="chunk_len"):
        vimscope_kernels.bimamba_inner(xz.float(), *(v.float() for v in p.values()), backend="triton", chunk_len=12)
    with pytest.raises(ValueError, match="delta must have shape"):
        vimscope_kernels.selective_scan_fn(torch.randn(1, 4, 3), torch.randn(1, 4, 2), -torch.rand(3, 2),
                                        torch.randn(1, 4, 2), torch.randn(1, 4, 2))  # fmt: skip


def test_cpu_dispatch_uses_reference_semantics():
    """On CPU: no grad -> the compiled CPU path (when present), with grad -> the reference; both equal the spec."""
    import vimscope_kernels
    from vimscope_kernels.bimamba.naive import bimamba_inner_ref

    xz, p = _args(length=9)
    xz, p = xz.float(), {k: v.float() for k, v in p.items()}
    with torch.no_grad():
        fast = vimscope_kernels.bimamba_inner(xz, *p.values())
    xz_g = xz.clone().requires_grad_()
    slow = vimscope_kernels.bimamba_inner(xz_g, *p.values())
    assert slow.requires_grad
    want = bimamba_inner_ref(xz.double(), *(v.double() for v in p.values()))
    torch.testing.assert_close(fast.double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(slow.double(), want, rtol=1e-5, atol=1e-6)


def test_empty_sequence():
    import vimscope_kernels

    xz, p = _args(length=0)
    out = vimscope_kernels.bimamba_inner(xz.float(), *(v.float() for v in p.values()), backend="triton")
    assert out.shape == (2, 0, 8)
