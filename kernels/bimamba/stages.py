"""Every stage of one forward + backward of the bidirectional op as a separate callable, for per-kernel timing."""

from __future__ import annotations

import torch

from ..common.config import backward_config, new_buffer
from .naive import PARAM_NAMES
from .params import delta_raw, scan_sources, stack_params


def stage_calls(xz: torch.Tensor, params: list, dy: torch.Tensor, cfg: dict) -> dict:
    """Every stage of one forward + backward as a zero-argument callable on inputs computed here once, in launch
    order, named by kernel (for per-kernel timing: benchmarks.kernels.tune_scan). Stages write their usual buffers (in
    place for combine and conv_bwd_pre), so repeated calls give the same work, not the same values."""
    from ..selective_scan.bwd import scan_backward
    from ..selective_scan.chunk_states import combine_chunks, local_chunk_states, states_for
    from ..selective_scan.fwd import scan_forward
    from .bwd import conv_bwd_dx, conv_bwd_pre, reduce_partials
    from .fwd import conv_xproj_forward

    channels = xz.shape[-1] // 2
    p = stack_params(dict(zip(PARAM_NAMES, params)), channels)
    x = xz[..., :channels]
    mode = cfg["conv_xproj"] or "fused"  # as the training forward
    x_dbl = conv_xproj_forward(x, p["conv_w"], p["conv_b"], p["x_proj_w"], mode)
    src = scan_sources(xz, x_dbl, p, delta_raw(x_dbl, p, cfg))
    src["dy"] = dy
    calls = {
        "conv_xproj": lambda: conv_xproj_forward(x, p["conv_w"], p["conv_b"], p["x_proj_w"], mode),
        "dt_gemm": lambda: delta_raw(x_dbl, p, cfg),
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
    calls["bwd_dt_gemm"] = lambda: delta_raw(x_dbl, p, cfg)
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
    calls["reduce"] = lambda: reduce_partials(bufs, x_dbl, p, src)
    d_dbl, _ = reduce_partials(bufs, x_dbl, p, src)
    du = bufs["du"]
    calls["conv_bwd_pre"] = lambda: conv_bwd_pre(x, p["conv_w"], p["conv_b"], p["x_proj_w"], d_dbl, du)
    calls["conv_bwd_dx"] = lambda: conv_bwd_dx(du, p["conv_w"], dxz[..., :channels])
    return calls
