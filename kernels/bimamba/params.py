"""The bidirectional op's parameters and scan sources: both directions stacked on a leading axis of 2, and the
pointers and strides the scan kernels read (shared by the forward, the backward and the stage timer)."""

from __future__ import annotations

import torch


def stack_params(params: dict, channels: int) -> dict:
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


def scan_sources(xz: torch.Tensor, x_dbl: torch.Tensor, p: dict, delta: torch.Tensor | None) -> dict:
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


def delta_raw(x_dbl: torch.Tensor, p: dict, cfg: dict) -> torch.Tensor | None:
    """dt_proj outside the scan: [2, B, L, R] @ [2, R, E] -> [2, B, L, E] fp32 (None when the kernel fuses it).

    Measured on the H100 (benchmarks.kernels.scan, 2026-11-25): the in-kernel rank-R projection as a broadcast-reduce
    over [T, BE, R] tiles made the bidirectional forward ~3x slower than the plain scan; one batched GEMM plus
    4 bytes per element and direction written and read back is far cheaper until it moves onto tensor cores.
    """
    if cfg["fuse_dt_proj"]:
        return None
    return torch.matmul(x_dbl[..., : p["R"]], p["dt_w"].transpose(1, 2).unsqueeze(1))


_CACHE: dict = {}
_CACHE_SIZE = 256  # entries (one per mixer layer and weight set): a few KB each


def cached_stack_params(params: dict, channels: int) -> dict:
    """``stack_params`` for inference, kept while the same weight tensors come back unchanged (identity and version
    counter): a model's forward then launches no stacking, exp or cast kernels per layer. The entry holds the
    weights themselves, so a freed tensor's address can never be mistaken for a live one. Tensors made under
    ``torch.inference_mode`` (a bf16 model's float32 weight copies) have no version counter: identity alone keys
    them, as nothing outside inference mode can change them in place."""
    tensors = tuple(params.values())
    key = tuple(id(t) for t in tensors)
    versions = tuple(-1 if t.is_inference() else t._version for t in tensors)
    hit = _CACHE.get(key)
    if hit is not None and hit[1] == versions and all(a is b for a, b in zip(hit[0], tensors)):
        return hit[2]
    stacked = stack_params(params, channels)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (tensors, versions, stacked)
    return stacked
