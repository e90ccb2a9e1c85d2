"""The bidirectional SSD op: ``bi_ssd`` (checks, dispatch) and its ``autograd.Function`` over the Triton kernels.

On CUDA tensors the Triton kernels run (``fwd``, ``bwd``); on CPU tensors the compiled recurrent scan
(``cpu_recurrent``, numba) runs when no gradient is needed, else the chunked PyTorch form (``cpu``), which autograd
differentiates. ``backend="triton"`` forces the kernels (the CPU tests run them in Triton's interpreter). The
function saves the inputs and the two directions' outputs (for the gate's gradient) and recomputes the rest in
backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["BiSSDFn", "bi_ssd", "DEFAULT_CHUNK", "LAUNCH"]

DEFAULT_CHUNK = 64
# Triton launch parameters of the scan kernels (benchmarks/kernels/ssd.py sweeps them on the GPU)
# segments: how many pieces the forward cuts each sequence into (None: enough to fill the GPU at small batch,
# fwd.segments_for). num_stages 2: 7-11 % faster forwards at 64 x 4,096 and 16 x 16,384 tokens on the H100
# (benchmarks/results/ssd_h100_2026-12-07.json), the backward within 1 %.
# infer_form: how a forward without gradients ends. "planes" (each direction writes a plane, ssd_out sums them
# into plane 0) or "fused" (direction 0 writes the output, direction 1 finishes it in its pass: no planes, one pass
# less, but each direction's launch alone has half the programs: on the H100 vim_ssd_tiny ran 0.90x as fast at
# 1024 px with it (same call) and at 217 against an earlier run's 302 images/s at 2048 px,
# benchmarks/results/backbone_memory_h100_2026-12-08.json).
LAUNCH = {"fwd_warps": 4, "bwd_warps": 4, "num_stages": 2, "segments": None, "infer_form": "planes"}


class BiSSDFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, chunk):
        from .fwd import ssd_infer, ssd_out, ssd_scan_fwd

        A32, bias32 = A.float().contiguous(), dt_bias.float().contiguous()
        x, z = _rowwise(x), _rowwise(z)
        D32 = D.float().contiguous()
        launch = (LAUNCH["fwd_warps"], LAUNCH["num_stages"])
        infer = not any(ctx.needs_input_grad)  # nothing saved for a backward
        if infer and LAUNCH["infer_form"] == "fused":
            return ssd_infer(x, dt, A32, bias32, B, C, z, D32, chunk, *launch)
        y2 = ssd_scan_fwd(x, dt, A32, bias32, B, C, chunk, *launch)
        out = ssd_out(y2, x, z, D32, out=y2[0] if infer else None)  # inference: the output over plane 0
        if infer:
            return out
        ctx.chunk = chunk
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, y2)
        return out

    @staticmethod
    def backward(ctx, dout):
        from .bwd import ssd_dx, ssd_out_bwd, ssd_scan_bwd

        x, dt, A, B, C, D, z, dt_bias, y2 = ctx.saved_tensors
        A32, bias32, D32 = A.float().contiguous(), dt_bias.float().contiguous(), D.float().contiguous()
        dy, dz, dD = ssd_out_bwd(dout, y2, x, z, D32)  # dy = dout * silu(z), in x's dtype
        dx2, dB, dC, ddt_in, da1, da2 = ssd_scan_bwd(
            x, dt, A32, bias32, B, C, dy, ctx.chunk, LAUNCH["bwd_warps"], LAUNCH["num_stages"]
        )
        dx = ssd_dx(dx2, dy, D32, x.dtype)
        pre = dt.float() + bias32
        delta = F.softplus(pre)
        da = da1 + da2  # d loss / d a, per token, direction and head
        ddt = (ddt_in + da * A32) * torch.sigmoid(pre)
        dA = (da * delta).sum((0, 1))
        dbias = ddt.sum((0, 1))
        return (
            dx,
            ddt.to(dt.dtype),
            dA.to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            dD.to(D.dtype),
            dz,
            dbias.to(dt_bias.dtype),
            None,
        )


def _rowwise(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` itself when its (H, P) rows are contiguous and evenly spaced (a slice of in_proj's output), else a copy."""
    if t is None or (t.stride(3) == 1 and t.stride(2) == t.shape[3] and t.stride(0) == t.stride(1) * t.shape[1]):
        return t
    return t.contiguous()


def _pick_backend(x: torch.Tensor, tensors) -> str:
    """Triton on CUDA; on CPU the compiled scan unless a gradient is needed (or numba is missing)."""
    if x.is_cuda:
        return "triton"
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return "torch" if needs_grad or not _compiled_cpu_available() else "cpu"


def _compiled_cpu_available() -> bool:
    try:
        from .cpu_recurrent import bi_ssd_recurrent  # noqa: F401  (numba)
    except ImportError:
        return False
    return True


def _is_pow2(n: int) -> bool:
    return n >= 16 and n & (n - 1) == 0


def _check(x, dt, A, B, C, D, z, dt_bias, chunk, backend) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (Bt, L, H, P), got {tuple(x.shape)}")
    Bt, L, H, P = x.shape
    if dt.shape != (Bt, L, 2, H):
        raise ValueError(f"dt must be (Bt, L, 2, H) = {(Bt, L, 2, H)}, got {tuple(dt.shape)}")
    if A.shape != (2, H) or (dt_bias is not None and dt_bias.shape != (2, H)):
        raise ValueError(f"A and dt_bias must be (2, H={H}), got {tuple(A.shape)}")
    if D.shape != (H,):
        raise ValueError(f"D must be (H={H},), got {tuple(D.shape)}")
    if B.dim() != 4 or B.shape[:2] != (Bt, L) or B.shape != C.shape or H % B.shape[2]:
        raise ValueError(f"B and C must be (Bt, L, G, N) with G dividing H={H}, got {tuple(B.shape)}")
    if z is not None and z.shape != x.shape:
        raise ValueError(f"z must have x's shape {tuple(x.shape)}, got {tuple(z.shape)}")
    if backend not in (None, "triton", "torch", "cpu"):
        raise ValueError(f"backend must be None, 'triton', 'torch' or 'cpu', got {backend!r}")
    if backend == "cpu" and x.device.type != "cpu":
        raise ValueError(f"backend 'cpu' takes CPU tensors, got {x.device}")
    if backend == "triton" or (backend is None and x.is_cuda):
        N = B.shape[3]
        if not (_is_pow2(P) and _is_pow2(N) and _is_pow2(chunk)):
            raise ValueError(f"the Triton kernels need P, N and chunk_size powers of two >= 16, got {P}, {N}, {chunk}")
        if x.dtype == torch.float64:
            raise ValueError("the Triton kernels take float32, float16 or bfloat16; use backend='torch' for float64")


def bi_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Bidirectional SSD core: (y_fwd + y_bwd + D x) * silu(z), (Bt, L, H, P) in x's dtype.

    x, z: (Bt, L, H, P); dt: (Bt, L, 2, H) raw (softplus(dt + dt_bias) is the step); A, dt_bias: (2, H), A < 0;
    B, C: (Bt, L, G, N); D: (H,). Direction 0 is causal, direction 1 anti-causal (see ``naive``). Views into one
    in_proj output are fine: the kernels take strides (each row's last dimension contiguous).
    chunk_size: tokens per chunk (None: ``DEFAULT_CHUNK``, read at call time).
    backend: None (Triton on CUDA; on CPU the compiled scan without gradients, else the chunked PyTorch form),
    "triton", "torch" (the chunked form) or "cpu" (the compiled scan: CPU tensors, forward only).
    """
    chunk_size = chunk_size or DEFAULT_CHUNK
    _check(x, dt, A, B, C, D, z, dt_bias, chunk_size, backend)
    backend = backend or _pick_backend(x, (x, dt, A, B, C, D, z, dt_bias))
    if backend == "cpu":
        from .cpu_recurrent import bi_ssd_recurrent

        return bi_ssd_recurrent(x, dt, A, B, C, D, z, dt_bias)
    if backend == "torch":
        from .cpu import bi_ssd_chunked

        return bi_ssd_chunked(x, dt, A, B, C, D, z, dt_bias, chunk_size=chunk_size)
    if dt_bias is None:
        dt_bias = torch.zeros_like(A)
    for name, t in (("x", x), ("B", B), ("C", C), ("z", z)):
        if t is not None and t.stride(-1) != 1:
            raise ValueError(f"{name} needs a contiguous last dimension")
    return BiSSDFn.apply(x, dt, A, B, C, D, z, dt_bias, chunk_size)
