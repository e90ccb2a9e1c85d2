"""The fused bidirectional Vim v2 mixer core: ``bimamba_inner`` (the ``autograd.Function``, checks, dispatch).

Forward in ``fwd`` (conv + x_proj, dt projection, scan), backward in ``bwd`` (scan backward, conv + x_proj
backward); the backward recomputes everything from xz, the x_proj output and the chunk states.
"""

from __future__ import annotations

import torch

from ..common.config import scan_config
from .naive import PARAM_NAMES
from .params import cached_stack_params, stack_params

# ----------------------------------------------------------------------------------------------- autograd


class BimambaInnerFn(torch.autograd.Function):
    """Saves xz, the x_proj output (R + 2N floats per token and direction) and the chunk states; recomputes the
    rest in backward."""

    @staticmethod
    def forward(ctx, cfg, xz, *params):
        named = dict(zip(PARAM_NAMES, params))
        p = stack_params(named, xz.shape[-1] // 2)
        from .fwd import bimamba_forward

        y, x_dbl, h_in = bimamba_forward(xz, p, cfg)
        ctx.cfg = cfg
        ctx.save_for_backward(xz, x_dbl, h_in, *params)
        return y

    @staticmethod
    def backward(ctx, dy):
        xz, x_dbl, h_in, *params = ctx.saved_tensors
        named = dict(zip(PARAM_NAMES, params))
        p = stack_params(named, xz.shape[-1] // 2)
        from .bwd import bimamba_backward

        dxz, g = bimamba_backward(xz, x_dbl, h_in, dy.contiguous(), p, ctx.cfg)
        order = [
            ("conv_w", "conv_w", "conv_w_b"),
            ("conv_b", "conv_b", "conv_b_b"),
            ("x_proj_w", "x_proj_w", "x_proj_w_b"),
            ("dt_w", "dt_proj_w", "dt_proj_w_b"),
            ("dt_bias", "dt_bias", "dt_bias_b"),
        ]
        out = {}
        for key, name_f, name_b in order:
            out[name_f], out[name_b] = g[key][0], g[key][1]
        out["A_log"], out["A_b_log"] = g["A_log"][0], g["A_log"][1]
        out["D"], out["D_b"] = g["D"][0], g["D"][1]
        grads = [out[n].reshape(named[n].shape).to(named[n].dtype) for n in PARAM_NAMES]
        return (None, dxz, *grads)


# ----------------------------------------------------------------------------------------------- public


def _check(xz: torch.Tensor, params: dict) -> None:
    """Shape checks with messages that name the argument (ValueError, never a kernel fault)."""
    if not isinstance(xz, torch.Tensor) or xz.dim() != 3 or xz.shape[-1] % 2:
        raise ValueError(f"xz must be (B, L, 2E) with an even last dimension, got {tuple(getattr(xz, 'shape', ()))}")
    if xz.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ValueError(f"xz must be a float tensor, got {xz.dtype}")
    channels = xz.shape[-1] // 2
    a_log = params["A_log"]
    if a_log.dim() != 2 or a_log.shape[0] != channels:
        raise ValueError(f"A_log must be (E={channels}, N), got {tuple(a_log.shape)}")
    n_state = a_log.shape[1]
    dt_w = params["dt_proj_w"]
    if dt_w.dim() != 2 or dt_w.shape[0] != channels:
        raise ValueError(f"dt_proj_w must be (E={channels}, R), got {tuple(dt_w.shape)}")
    rank = dt_w.shape[1]
    conv_w = params["conv_w"]
    if conv_w.shape[0] != channels or conv_w.dim() not in (2, 3) or (conv_w.dim() == 3 and conv_w.shape[1] != 1):
        raise ValueError(f"conv_w must be (E={channels}, K) or (E, 1, K), got {tuple(conv_w.shape)}")
    kernel = conv_w.shape[-1]
    expected = {
        "conv_w": conv_w.shape,
        "conv_b": (channels,),
        "x_proj_w": (rank + 2 * n_state, channels),
        "dt_proj_w": (channels, rank),
        "dt_bias": (channels,),
        "A_log": (channels, n_state),
        "D": (channels,),
    }
    for name, shape in expected.items():
        for suffix_name in (name, _backward_name(name)):
            t = params[suffix_name]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(shape):
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"{suffix_name} must have shape {tuple(shape)} (E={channels}, R={rank}, N={n_state},"
                    f" K={kernel}), got {got}"
                )
            if t.device != xz.device:
                raise ValueError(f"{suffix_name} is on {t.device} but xz is on {xz.device}")


def _backward_name(name: str) -> str:
    return "A_b_log" if name == "A_log" else name + "_b"


def bimamba_inner(
    xz: torch.Tensor,
    conv_w: torch.Tensor,
    conv_b: torch.Tensor,
    conv_w_b: torch.Tensor,
    conv_b_b: torch.Tensor,
    x_proj_w: torch.Tensor,
    x_proj_w_b: torch.Tensor,
    dt_proj_w: torch.Tensor,
    dt_proj_w_b: torch.Tensor,
    dt_bias: torch.Tensor,
    dt_bias_b: torch.Tensor,
    A_log: torch.Tensor,
    A_b_log: torch.Tensor,
    D: torch.Tensor,
    D_b: torch.Tensor,
    *,
    chunk_len: int | None = None,
    backend: str | None = None,
    **launch,
) -> torch.Tensor:
    """Both directions of a Vim v2 mixer between in_proj and out_proj, averaged.

    Shapes (B batch, L tokens, E inner channels, N state, R dt rank, K conv taps); the ``*_b`` arguments are the
    backward direction's:
        xz (B, L, 2E) as in_proj writes it (x | z), any float dtype; conv_w (E, K) or (E, 1, K); conv_b (E,);
        x_proj_w (R + 2N, E); dt_proj_w (E, R); dt_bias (E,); A_log (E, N); D (E,)
        returns y (B, L, E) in xz's dtype = (fwd + flip(bwd(flip(xz)))) / 2, see ``naive.bimamba_inner_ref``.
    backend: None picks the Triton kernel for CUDA tensors, the compiled CPU path for CPU tensors without
    gradients and the PyTorch reference otherwise; "triton", "cpu" or "reference" force one.
    chunk_len (power of two) sets the parallelism along L (default: chunks only when the batch cannot fill the GPU).
    Other keywords tune the launch, see ``config.DEFAULTS`` (block_e, block_t, num_warps, num_stages, elast,
    exp_poly, their bwd_* twins, and fuse_dt_proj: the rank-R dt projection inside the scan kernel instead of one
    batched GEMM before it); unset ones come from ``config.TUNED`` for this card and bucket, else the defaults.
    """
    params = dict(
        zip(
            PARAM_NAMES,
            (
                conv_w,
                conv_b,
                conv_w_b,
                conv_b_b,
                x_proj_w,
                x_proj_w_b,
                dt_proj_w,
                dt_proj_w_b,
                dt_bias,
                dt_bias_b,
                A_log,
                A_b_log,
                D,
                D_b,
            ),
        )
    )
    _check(xz, params)
    backend = _pick_backend(backend, xz, params.values())
    if backend == "reference":
        from .naive import bimamba_inner_ref

        return bimamba_inner_ref(xz, *params.values())
    if backend == "cpu":
        from .cpu import bimamba_inner_cpu

        return bimamba_inner_cpu(xz, *params.values())
    if xz.dtype == torch.float64:
        raise ValueError("the Triton kernel takes float32, bfloat16 or float16 inputs (float64: backend='reference')")
    batch, length, two_e = xz.shape
    if length == 0 or batch == 0:
        return xz.new_zeros((batch, length, two_e // 2))
    cfg = scan_config(batch, length, two_e // 2, xz.device, dtype=xz.dtype, chunk_len=chunk_len, **launch)
    xz = xz if xz.stride(-1) == 1 else xz.contiguous()
    if cfg["seq_fwd"] and not _needs_grad(xz, params.values()) and _seq_supports(params):
        from .fwd import bimamba_infer

        with torch.no_grad():
            return bimamba_infer(xz, cached_stack_params(params, two_e // 2), cfg)
    return BimambaInnerFn.apply(cfg, xz, *params.values())


def _seq_supports(params: dict) -> bool:
    from .seq import supports

    return supports(params["A_log"].shape[1], params["dt_proj_w"].shape[1], params["conv_w"].shape[-1])


def _needs_grad(xz: torch.Tensor, tensors) -> bool:
    return torch.is_grad_enabled() and (xz.requires_grad or any(t.requires_grad for t in tensors))


def _pick_backend(backend: str | None, xz: torch.Tensor, tensors) -> str:
    if backend is not None:
        if backend not in ("triton", "cpu", "reference"):
            raise ValueError(f"backend must be 'triton', 'cpu', 'reference' or None, got {backend!r}")
        return backend
    if xz.is_cuda:
        return "triton"
    if not _needs_grad(xz, tensors) and _cpu_path_available():
        return "cpu"
    return "reference"


def _cpu_path_available() -> bool:
    try:
        from .cpu import bimamba_inner_cpu  # noqa: F401  (written by the models helper; numba)
    except ImportError:
        return False
    return True
