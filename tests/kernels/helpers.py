"""Shared pieces of the kernel tests: random Vim-like parameters, the error measure, tolerances, a pairwise grid."""

from __future__ import annotations

import itertools
import random

import torch
from vimscope_kernels.bimamba.naive import PARAM_NAMES

# ||out - ref|| / ||ref|| against the float64 reference, per input dtype: (forward, gradients)
TOLERANCE = {
    torch.float32: (1e-5, 5e-5),
    torch.float16: (3e-3, 6e-3),
    torch.bfloat16: (1.5e-2, 2.5e-2),
}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error; NaN anywhere gives inf (never passes); an all-zero reference compares absolutely."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    diff = (out - ref).norm().item()
    scale = ref.norm().item()
    return diff / scale if scale > 0 else diff


def compare(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(error of out, error of ref merely rounded to out's dtype): no result can beat the second (fp16 gradients
    of a few 1e-6 sit in the subnormal range and keep only a few bits)."""
    return rel_err(out, ref), rel_err(ref.detach().to(out.dtype), ref)


def failures(errors: dict, tol_out: float, tol_grad: float) -> dict:
    """The entries of {name: (error, rounding floor)} above max(tolerance, 2 x floor)."""
    return {k: e for k, (e, floor) in errors.items() if e > max(tol_out if k == "out" else tol_grad, 2 * floor)}


def vim_params(channels: int, n_state: int, rank: int, kernel: int = 4, *, seed: int = 0, silent: str = "") -> dict:
    """Float64 parameters at the scale of an initialised Vim block (dt ~ softplus(-2.5..), A_log ~ log(1..N)).

    silent="fwd" (or "bwd") zeroes that direction's C rows of x_proj and its D, so the output is the other
    direction's alone: each direction is then checked on its own, gradients of the silent one included.
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    proj = rank + 2 * n_state
    a_log = torch.log(torch.arange(1, n_state + 1, dtype=torch.float64)).repeat(channels, 1)
    p = {}
    for suffix in ("", "_b"):
        p["conv_w" + suffix] = rnd(channels, 1, kernel, scale=0.5)
        p["conv_b" + suffix] = rnd(channels, scale=0.2)
        p["x_proj_w" + suffix] = rnd(proj, channels, scale=channels**-0.5)
        p["dt_proj_w" + suffix] = rnd(channels, rank, scale=rank**-0.5)
        p["dt_bias" + suffix] = rnd(channels, scale=0.5) - 2.5
        p["D" + suffix] = rnd(channels)
    p["A_log"] = a_log + rnd(channels, n_state, scale=0.2)
    p["A_b_log"] = a_log + rnd(channels, n_state, scale=0.2)
    if silent:
        suffix = "" if silent == "fwd" else "_b"
        p["x_proj_w" + suffix][rank + n_state :] = 0.0
        p["D" + suffix].zero_()
    return {name: p[name] for name in PARAM_NAMES}


def pairwise(factors: dict[str, list], tries: int = 20) -> list[dict]:
    """A small set of cases covering every pair of factor levels: greedy, best of a few seeded orders
    (deterministic)."""
    names = list(factors)
    index_pairs = list(itertools.combinations(range(len(names)), 2))
    all_combos = list(itertools.product(*(range(len(factors[n])) for n in names)))
    best_cases = None
    for seed in range(tries):
        combos = list(all_combos)
        random.Random(seed).shuffle(combos)
        uncovered = {(i, c[i], j, c[j]) for c in all_combos for i, j in index_pairs}
        cases = []
        while uncovered:
            pick = max(combos, key=lambda c: sum((i, c[i], j, c[j]) in uncovered for i, j in index_pairs))
            uncovered -= {(i, pick[i], j, pick[j]) for i, j in index_pairs}
            cases.append(pick)
        if best_cases is None or len(cases) < len(best_cases):
            best_cases = cases
    return [{n: factors[n][k] for n, k in zip(names, c)} for c in best_cases]


def chunk_for(spec, length: int) -> int:
    """A chunk-length level: an int, or "L" for the smallest power of two >= L (one chunk)."""
    return spec if isinstance(spec, int) else 1 << max(0, length - 1).bit_length()
