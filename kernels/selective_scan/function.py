"""One-direction selective scan (Mamba's ``selective_scan_fn``, token-major layout): orchestration, the
``autograd.Function`` and the public function.

Same kernels as the bidirectional op with the conv and dt projection switched off and one direction.
"""

from __future__ import annotations

import torch

from ..common.config import backward_config, new_buffer, scan_config

# ----------------------------------------------------------------------------------------------- orchestration


def _sources(u, delta, A, Bm, Cm, D, z, delta_bias, softplus: bool) -> dict:
    batch, length, channels = u.shape
    n_state = A.shape[1]
    zeros = u.new_zeros((1, channels), dtype=torch.float32)
    return {
        "u": u,
        "z": z,
        "dt": delta,
        "b": Bm,
        "c": Cm,
        "conv_w": None,
        "conv_b": None,
        "dt_w": None,
        "dt_bias": zeros if delta_bias is None else delta_bias.reshape(1, channels).float().contiguous(),
        "A": A.reshape(1, channels, n_state).float().contiguous(),
        "D": zeros if D is None else D.reshape(1, channels).float().contiguous(),
        "B": batch,
        "L": length,
        "E": channels,
        "N": n_state,
        "R": 1,
        "K": 1,
        "ND": 1,
        "conv": False,
        "dtproj": False,
        "softplus": softplus,
        "s_u": (u.stride(0), u.stride(1)),
        "s_z": (z.stride(0), z.stride(1)) if z is not None else (0, 0),
        "s_dt": (0, delta.stride(0), delta.stride(1)),
        "s_b": (0, Bm.stride(0), Bm.stride(1)),
        "s_c": (0, Cm.stride(0), Cm.stride(1)),
    }


def scan_fwd(src: dict, cfg: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    from .chunk_states import chunk_states
    from .fwd import scan_forward

    h_in = chunk_states(src, cfg) if cfg["n_chunks"] > 1 else None
    y = new_buffer(src["u"], src["u"].shape)
    return scan_forward(src, cfg, y, h_in), h_in


def scan_bwd(src: dict, cfg: dict, h_in, dy: torch.Tensor) -> dict:
    from .bwd import scan_backward
    from .chunk_states import chunk_states, states_for

    src["dy"] = dy
    bcfg = backward_config(cfg, src["E"], src["L"])
    h_in = states_for(src, cfg, h_in, bcfg)
    cfg = bcfg
    q_in = chunk_states(src, cfg, reverse_carry=True, grad=True) if cfg["n_chunks"] > 1 else None
    dz = new_buffer(src["z"], src["z"].shape) if src["z"] is not None else None
    bufs = scan_backward(src, cfg, h_in, q_in, dz)
    n_state, n_pad = src["N"], bufs["dbc"].shape[-1]
    dparam = bufs["dparam"].sum(0)[0]  # [E, NP + 3]
    return {
        "u": bufs["du"][0],
        "delta": bufs["ddt"][0],
        "A": dparam[:, :n_state],
        "B": bufs["dbc"][0].sum(0)[0][..., :n_state],
        "C": bufs["dbc"][1].sum(0)[0][..., :n_state],
        "D": dparam[:, n_pad],
        "z": dz,
        "delta_bias": dparam[:, n_pad + 1],
    }


# ----------------------------------------------------------------------------------------------- autograd


class SelectiveScanFn(torch.autograd.Function):
    """Saves the inputs and the chunk states (B * E * N per chunk); recomputes the scan in backward."""

    @staticmethod
    def forward(ctx, cfg, softplus, u, delta, A, Bm, Cm, D, z, delta_bias):
        src = _sources(u, delta, A, Bm, Cm, D, z, delta_bias, softplus)
        y, h_in = scan_fwd(src, cfg)
        ctx.cfg, ctx.softplus = cfg, softplus
        ctx.save_for_backward(u, delta, A, Bm, Cm, D, z, delta_bias, h_in)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, Bm, Cm, D, z, delta_bias, h_in = ctx.saved_tensors
        src = _sources(u, delta, A, Bm, Cm, D, z, delta_bias, ctx.softplus)
        g = scan_bwd(src, ctx.cfg, h_in, dy.contiguous())
        inputs = {"u": u, "delta": delta, "A": A, "B": Bm, "C": Cm, "D": D, "z": z, "delta_bias": delta_bias}
        grads = [None if t is None else g[k].reshape(t.shape).to(t.dtype) for k, t in inputs.items()]
        return (None, None, *grads)


# ----------------------------------------------------------------------------------------------- public


def selective_scan_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    softplus: bool = False,
    *,
    chunk_len: int | None = None,
    backend: str | None = None,
    **launch,
) -> torch.Tensor:
    """One-direction selective scan, token-major: u, delta, z (B, L, E); A (E, N); B, C (B, L, N); D, delta_bias
    (E,). Returns (B, L, E) in u's dtype:

        delta = softplus(delta + delta_bias) (when softplus);  h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t
        y_t = C_t . h_t + D u_t;  out = y * silu(z)

    backend: None = Triton for CUDA tensors, the PyTorch reference otherwise; "triton" / "reference" force one.
    """
    if u.dim() != 3:
        raise ValueError(f"u must be (B, L, E), got {tuple(u.shape)}")
    batch, length, channels = u.shape
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"A must be (E={channels}, N), got {tuple(A.shape)}")
    n_state = A.shape[1]
    shapes = {"delta": (delta, u.shape), "B": (B, (batch, length, n_state)), "C": (C, (batch, length, n_state))}
    shapes.update({"z": (z, u.shape), "D": (D, (channels,)), "delta_bias": (delta_bias, (channels,))})
    for name, (t, shape) in shapes.items():
        if t is not None and tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
        if t is not None and t.device != u.device:
            raise ValueError(f"{name} is on {t.device} but u is on {u.device}")
    if backend not in (None, "triton", "reference"):
        raise ValueError(f"backend must be 'triton', 'reference' or None, got {backend!r}")
    if backend == "reference" or (backend is None and not u.is_cuda) or u.dtype == torch.float64:
        if backend == "triton":
            raise ValueError("the Triton kernel takes float32, bfloat16 or float16 inputs")
        from .naive import selective_scan_ref

        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, softplus)
    if length == 0 or batch == 0:
        return u.new_zeros(u.shape)
    cfg = scan_config(batch, length, channels, u.device, dtype=u.dtype, chunk_len=chunk_len, **launch)

    def last_dim_unit(t):
        return None if t is None else (t if t.stride(-1) == 1 else t.contiguous())

    u, delta, B, C, z = (last_dim_unit(t) for t in (u, delta, B, C, z))
    return SelectiveScanFn.apply(cfg, bool(softplus), u, delta, A, B, C, D, z, delta_bias)
