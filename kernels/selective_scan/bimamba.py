"""The fused bidirectional Vim v2 mixer core: ``bimamba_inner`` (forward/backward orchestration, autograd, dispatch).

Forward: conv+x_proj (one Triton GEMM kernel, both directions, conv output never stored), dt_proj as one batched
GEMM (or inside the scan kernel with ``fuse_dt_proj=True``), [chunk states + combine when the sequence is cut into
chunks], then the scan (both directions in one launch, conv recomputed, softplus, D skip, silu(z) gate and the
average fused). The backward recomputes everything from xz, the x_proj output and the chunk states.
"""

from __future__ import annotations

import torch

from .config import backward_config, new_buffer, scan_config
from .naive import PARAM_NAMES

# ----------------------------------------------------------------------------------------------- orchestration


def _stack(params: dict, channels: int) -> dict:
    """Both directions' parameters stacked on a leading axis of 2, fp32 and contiguous (tiny tensors)."""

    def pair(name_f, name_b, shape):
        return torch.stack([params[name_f].reshape(shape), params[name_b].reshape(shape)]).float().contiguous()

    kernel = params["conv_w"].shape[-1]
    rank = params["dt_proj_w"].shape[1]
    n_state = params["A_log"].shape[1]
    a_log = pair("A_log", "A_b_log", (channels, n_state))
    return {
        "conv_w": pair("conv_w", "conv_w_b", (channels, kernel)),
        "conv_b": pair("conv_b", "conv_b_b", (channels,)),
        "x_proj_w": pair("x_proj_w", "x_proj_w_b", (rank + 2 * n_state, channels)),
        "dt_w": pair("dt_proj_w", "dt_proj_w_b", (channels, rank)),
        "dt_bias": pair("dt_bias", "dt_bias_b", (channels,)),
        "A": -torch.exp(a_log),
        "D": pair("D", "D_b", (channels,)),
        "R": rank,
        "N": n_state,
        "K": kernel,
    }


def _sources(xz: torch.Tensor, x_dbl: torch.Tensor, p: dict, delta: torch.Tensor | None) -> dict:
    """Pointers and strides the scan kernels read: x and z straight out of xz, dt rows | B | C out of x_dbl, and
    delta_raw [2, B, L, E] when the dt projection was done outside the kernel (``delta`` given)."""
    batch, length, two_e = xz.shape
    channels = two_e // 2
    rank, n_state = p["R"], p["N"]
    sd = (x_dbl.stride(0), x_dbl.stride(1), x_dbl.stride(2))
    return {
        "u": xz,
        "z": xz[..., channels:],
        "dt": x_dbl if delta is None else delta,
        "b": x_dbl[..., rank : rank + n_state],
        "c": x_dbl[..., rank + n_state :],
        "conv_w": p["conv_w"],
        "conv_b": p["conv_b"],
        "dt_w": p["dt_w"],
        "dt_bias": p["dt_bias"],
        "A": p["A"],
        "D": p["D"],
        "B": batch,
        "L": length,
        "E": channels,
        "N": n_state,
        "R": rank,
        "K": p["K"],
        "ND": 2,
        "conv": True,
        "dtproj": delta is None,
        "softplus": True,
        "s_u": (xz.stride(0), xz.stride(1)),
        "s_z": (xz.stride(0), xz.stride(1)),
        "s_dt": sd if delta is None else (delta.stride(0), delta.stride(1), delta.stride(2)),
        "s_b": sd,
        "s_c": sd,
    }


def _delta_raw(x_dbl: torch.Tensor, p: dict, cfg: dict) -> torch.Tensor | None:
    """dt_proj outside the scan: [2, B, L, R] @ [2, R, E] -> [2, B, L, E] fp32 (None when the kernel fuses it).

    Measured on the H100 (bench_scan.py, 2026-11-25): the in-kernel rank-R projection as a broadcast-and-reduce
    over [T, BE, R] tiles made the bidirectional forward ~3x slower than the plain scan; one batched GEMM plus
    4 bytes per element and direction written and read back is far cheaper until it moves onto tensor cores.
    """
    if cfg["fuse_dt_proj"]:
        return None
    return torch.matmul(x_dbl[..., : p["R"]], p["dt_w"].transpose(1, 2).unsqueeze(1))


def bimamba_forward(xz: torch.Tensor, p: dict, cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Returns y (B, L, E), x_dbl [2, B, L, R + 2N] fp32 and the chunk-entering states (None for one chunk)."""
    from .conv_proj import conv_xproj_forward
    from .scan_fwd import chunk_states, scan_forward

    channels = xz.shape[-1] // 2
    x_dbl = conv_xproj_forward(xz[..., :channels], p["conv_w"], p["conv_b"], p["x_proj_w"])
    src = _sources(xz, x_dbl, p, _delta_raw(x_dbl, p, cfg))
    h_in = chunk_states(src, cfg) if cfg["n_chunks"] > 1 else None
    y = new_buffer(xz, xz.shape[:2] + (channels,))
    scan_forward(src, cfg, y, h_in)
    return y, x_dbl, h_in


def bimamba_backward(xz, x_dbl, h_in, dy, p: dict, cfg: dict) -> tuple[torch.Tensor, dict]:
    """Returns dxz (B, L, 2E) and the stacked parameter gradients (fp32, leading axis = direction)."""
    from .conv_proj import conv_xproj_backward
    from .scan_bwd import scan_backward
    from .scan_fwd import chunk_states, states_for

    channels = xz.shape[-1] // 2
    src = _sources(xz, x_dbl, p, _delta_raw(x_dbl, p, cfg))
    src["dy"] = dy
    bcfg = backward_config(cfg, channels, xz.shape[1])
    h_in = states_for(src, cfg, h_in, bcfg)
    q_in = chunk_states(src, bcfg, reverse_carry=True, grad=True) if bcfg["n_chunks"] > 1 else None
    dxz = new_buffer(xz, xz.shape)
    bufs = scan_backward(src, bcfg, h_in, q_in, dxz[..., channels:])
    d_dbl, grads = _reduce_partials(bufs, x_dbl, p, src)
    grads["x_proj_w"], grads["conv_w"], grads["conv_b"] = conv_xproj_backward(
        xz[..., :channels], p["conv_w"], p["conv_b"], p["x_proj_w"], d_dbl, bufs["du"], dxz[..., :channels]
    )
    return dxz, grads


def _reduce_partials(bufs: dict, x_dbl: torch.Tensor, p: dict, src: dict) -> tuple[torch.Tensor, dict]:
    """The scan kernel's partial sums -> d x_dbl [2, B, L, P] and the gradients of dt_w, dt_bias, A_log, D."""
    rank, n_state = p["R"], p["N"]
    n_pad = bufs["dbc"].shape[-1]
    dparam = bufs["dparam"].sum(0)  # [2, E, NP + 3]
    if src["dtproj"]:
        d_rows, d_dt_w = bufs["ddt"].sum(0)[..., :rank], bufs["dw"].sum(0)[..., :rank]
    else:  # ddt: [2, B, L, E] gradient of delta_raw; the dt projection's backward is two GEMMs
        rows = x_dbl[..., :rank]
        d_rows = torch.matmul(bufs["ddt"], p["dt_w"].unsqueeze(1))
        d_dt_w = torch.matmul(bufs["ddt"].flatten(1, 2).transpose(1, 2), rows.flatten(1, 2))
    d_dbl = torch.cat(
        [d_rows, bufs["dbc"][0].sum(0)[..., :n_state], bufs["dbc"][1].sum(0)[..., :n_state]], dim=-1
    ).contiguous()  # [2, B, L, P]
    grads = {
        "dt_w": d_dt_w,
        "dt_bias": dparam[..., n_pad + 1],
        "A_log": dparam[..., :n_state] * p["A"],
        "D": dparam[..., n_pad],
    }
    return d_dbl, grads


def stage_calls(xz: torch.Tensor, params: list, dy: torch.Tensor, cfg: dict) -> dict:
    """Every stage of one forward + backward as a zero-argument callable on inputs computed here once, in launch
    order, named by kernel (for per-kernel timing: benchmarks/tune_scan.py). Stages write their usual buffers (in
    place for combine and conv_bwd_pre), so repeated calls give the same work, not the same values."""
    from .conv_proj import conv_bwd_dx, conv_bwd_pre, conv_xproj_forward
    from .scan_bwd import scan_backward
    from .scan_fwd import combine_chunks, local_chunk_states, scan_forward, states_for

    channels = xz.shape[-1] // 2
    p = _stack(dict(zip(PARAM_NAMES, params)), channels)
    x = xz[..., :channels]
    x_dbl = conv_xproj_forward(x, p["conv_w"], p["conv_b"], p["x_proj_w"])
    src = _sources(xz, x_dbl, p, _delta_raw(x_dbl, p, cfg))
    src["dy"] = dy
    calls = {
        "conv_xproj": lambda: conv_xproj_forward(x, p["conv_w"], p["conv_b"], p["x_proj_w"]),
        "dt_gemm": lambda: _delta_raw(x_dbl, p, cfg),
    }
    h_in = None
    if cfg["n_chunks"] > 1:
        decay, state = local_chunk_states(src, cfg)
        calls["chunk_state"] = lambda: local_chunk_states(src, cfg)
        calls["combine"] = lambda: combine_chunks(decay, state)
        combine_chunks(decay, state)
        h_in = state.clone()
    y = new_buffer(xz, xz.shape[:2] + (channels,))
    calls["scan_fwd"] = lambda: scan_forward(src, cfg, y, h_in)
    bcfg = backward_config(cfg, channels, xz.shape[1])
    calls["bwd_dt_gemm"] = lambda: _delta_raw(x_dbl, p, cfg)
    if bcfg["n_chunks"] > 1 and bcfg["chunk_len"] != cfg["chunk_len"]:
        calls["bwd_states"] = lambda: states_for(src, cfg, h_in, bcfg)
    h_b = states_for(src, cfg, h_in, bcfg)
    q_in = None
    if bcfg["n_chunks"] > 1:
        decay_q, q = local_chunk_states(src, bcfg, grad=True)
        calls["grad_chunk_state"] = lambda: local_chunk_states(src, bcfg, grad=True)
        calls["grad_combine"] = lambda: combine_chunks(decay_q, q, reverse_carry=True)
        combine_chunks(decay_q, q, reverse_carry=True)
        q_in = q.clone()
    dxz = new_buffer(xz, xz.shape)
    bufs = scan_backward(src, bcfg, h_b, q_in, dxz[..., channels:])
    calls["scan_bwd"] = lambda: scan_backward(src, bcfg, h_b, q_in, dxz[..., channels:])
    calls["reduce"] = lambda: _reduce_partials(bufs, x_dbl, p, src)
    d_dbl, _ = _reduce_partials(bufs, x_dbl, p, src)
    du = bufs["du"]
    calls["conv_bwd_pre"] = lambda: conv_bwd_pre(x, p["conv_w"], p["conv_b"], p["x_proj_w"], d_dbl, du)
    calls["conv_bwd_dx"] = lambda: conv_bwd_dx(du, p["conv_w"], dxz[..., :channels])
    return calls


# ----------------------------------------------------------------------------------------------- autograd


class BimambaInnerFn(torch.autograd.Function):
    """Saves xz, the x_proj output (R + 2N floats per token and direction) and the chunk states; recomputes the
    rest in backward."""

    @staticmethod
    def forward(ctx, cfg, xz, *params):
        named = dict(zip(PARAM_NAMES, params))
        p = _stack(named, xz.shape[-1] // 2)
        y, x_dbl, h_in = bimamba_forward(xz, p, cfg)
        ctx.cfg = cfg
        ctx.save_for_backward(xz, x_dbl, h_in, *params)
        return y

    @staticmethod
    def backward(ctx, dy):
        xz, x_dbl, h_in, *params = ctx.saved_tensors
        named = dict(zip(PARAM_NAMES, params))
        p = _stack(named, xz.shape[-1] // 2)
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
    return BimambaInnerFn.apply(cfg, xz, *params.values())


def _pick_backend(backend: str | None, xz: torch.Tensor, tensors) -> str:
    if backend is not None:
        if backend not in ("triton", "cpu", "reference"):
            raise ValueError(f"backend must be 'triton', 'cpu', 'reference' or None, got {backend!r}")
        return backend
    if xz.is_cuda:
        return "triton"
    needs_grad = torch.is_grad_enabled() and (xz.requires_grad or any(t.requires_grad for t in tensors))
    if not needs_grad and _cpu_path_available():
        return "cpu"
    return "reference"


def _cpu_path_available() -> bool:
    try:
        from .cpu import bimamba_inner_cpu  # noqa: F401  (written by the models helper; numba)
    except ImportError:
        return False
    return True
