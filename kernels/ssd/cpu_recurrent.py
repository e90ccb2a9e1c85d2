"""Compiled CPU forward of the bidirectional SSD in its recurrent form: the op's CPU inference path (no autograd).

Same function as ``naive.bi_ssd_ref``. Per (image, head) one task walks the tokens forward, then backward, with the
head's (P x N) state in cache: h = exp(a[t]) h + delta[t] x[t] B[t]^T, y[t] = h C[t]. That is 2 N P multiply-adds
per token, head and direction and nothing else, where the chunked form (``cpu.py``) adds O(Q) per token for the
in-chunk (Q x Q) products, the decay matrices and the copies around its einsums. On the 2-core development machine
(4 x 257 tokens, 6 heads of 64, N = 64: one vim_ssd_tiny layer) the chunked form took 20-22 ms of CPU on one
thread, this path 6.5 ms (3.5 ms wall on two threads), the D skip and the silu(z) gate fused into its backward pass.
The scan itself, 5.4 ms, makes 50.5 M state updates (9 G/s, about 2 cycles per 8-lane vector of state: three loads,
a store and three multiply-adds, at the core's L1 limits): little is left to gain inside the scan.

The state is stored (P, N) so that the inner loop runs over the N states of one channel: the product with C is a
reduction kept in registers (compiled with reassociation, which only this loop needs), while the state is read and
written once per token ((N, P) with the P sums in memory was 20 % slower). The two directions run one after the
other in the same task, the forward one leaving its output in ``out`` for the backward one to add to, skip and
gate, so ``out`` is written by one task only.
softplus(dt + dt_bias) and exp(delta * A) are computed by torch beforehand (one value per token, head and
direction). float64 inputs compute in float64, anything else in float32; the output has x's dtype.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F

# the vectorisable float32 sigmoid and the lock around numba's parallel calls are the bimamba CPU path's: one lock
# for both ops, since numba's fallback threading layer aborts on concurrent parallel calls
from ..bimamba.cpu import _PARALLEL_LOCK, FAST, _sigmoid

__all__ = ["bi_ssd_recurrent"]

# reassociation for the state loop only: its sum over the N states becomes a vector reduction
REDUCE = FAST | {"reassoc"}


@numba.njit(fastmath=REDUCE, inline="never", cache=True)
def _token(h, x_t, bv, cv, d, decay, y):  # pragma: no cover - compiled
    """One token of one head and direction: h[p] = decay * h[p] + (d x_t[p]) B, y[p] = h[p] . C; h: (P, N)."""
    for p in range(h.shape[0]):
        u = d * x_t[p]
        hp = h[p]
        s = np.float32(0)  # float64 inputs widen it (numba unifies the types); y[p] * 0 does not vectorise
        for n in range(h.shape[1]):
            v = hp[n] * decay + u * bv[n]
            hp[n] = v
            s += v * cv[n]
        y[p] = s


@numba.njit(fastmath=FAST, inline="always")
def _finish(out_t, y, x_t, z_t, d_skip, gated):  # pragma: no cover - compiled
    """out_t = (out_t + y + D x_t) * silu(z_t): the forward direction's output, the backward one's, skip and gate."""
    for p in range(out_t.shape[0]):
        v = out_t[p] + y[p] + d_skip * x_t[p]
        if gated:
            z = z_t[p]
            v *= z * _sigmoid(z)
        out_t[p] = v


@numba.njit(parallel=True, fastmath=FAST, cache=True, nogil=True)
def _bi_scan(x, z, B, C, delta, decay, d_skip, gated, out):  # pragma: no cover - compiled
    """x, z, out: (Bt, L, H, P); B, C: (Bt, L, G, N); delta, decay: (Bt, L, 2, H); d_skip: (H,);
    z is read only when ``gated``. Writes ``out``."""
    nb, length, heads, channels = x.shape
    groups, n_state = B.shape[2], B.shape[3]
    per_group = heads // groups
    for task in numba.prange(nb * heads):
        b, hd = task // heads, task % heads
        g = hd // per_group
        h = np.empty((channels, n_state), x.dtype)
        y = np.zeros(channels, x.dtype)
        for direction in range(2):
            h[:] = 0
            for step in range(length):
                t = length - 1 - step if direction else step
                x_t = x[b, t, hd]
                _token(h, x_t, B[b, t, g], C[b, t, g], delta[b, t, direction, hd], decay[b, t, direction, hd], y)
                if direction == 0:
                    out[b, t, hd] = y
                else:
                    _finish(out[b, t, hd], y, x_t, z[b, t, hd], d_skip[hd], gated)


def _np(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return t.detach().to(dtype).contiguous().numpy()


def bi_ssd_recurrent(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The bidirectional SSD core on CPU tensors, forward only (shapes in ``naive``); the result is detached."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        pre = dt.to(dtype) + (0 if dt_bias is None else dt_bias.to(dtype))
        delta = F.softplus(pre)
        decay = torch.exp(delta * A.to(dtype))
        xs = _np(x, dtype)  # contiguous copies: on strided views of in_proj's output the scan ran 2x slower
        zs = xs if z is None else _np(z, dtype)
        rest = [_np(t, dtype) for t in (B, C, delta, decay, D)]
        out = np.empty(xs.shape, xs.dtype)
        with _PARALLEL_LOCK:
            _bi_scan(xs, zs, *rest, z is not None, out)
    return torch.from_numpy(out).to(x.dtype)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the float32 scan now, so a set-up step pays for it once rather
    than the first run of an SSD model on the CPU."""
    x = torch.zeros(1, 3, 2, 4)
    groups = torch.zeros(1, 3, 1, 4)
    bi_ssd_recurrent(x, torch.zeros(1, 3, 2, 2), -torch.ones(2, 2), groups, groups, torch.ones(2), x, torch.zeros(2, 2))
