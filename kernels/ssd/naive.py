"""Readable float reference of the bidirectional SSD mixer core (Mamba-2 form): the specification of the op.

Shapes (Bt batch, L tokens, H heads of P channels, G groups of the N-state B and C, H a multiple of G):

    x        (Bt, L, H, P)    input of the mixer (in_proj output)
    dt       (Bt, L, 2, H)    raw step size per direction (0: forward, 1: backward) and head
    A        (2, H)           negative decay rate per direction and head (A = -exp(A_log))
    B, C     (Bt, L, G, N)    shared by the H / G heads of a group and by both directions
    D        (H,)             skip connection
    z        (Bt, L, H, P)    optional gate: the output is multiplied by silu(z)
    dt_bias  (2, H)           optional, added to dt before the softplus

    y        (Bt, L, H, P)    (y_fwd + y_bwd + D * x) * silu(z)

with, per head, delta = softplus(dt + dt_bias) and a = delta * A (one scalar decay per token, head, direction):

    y_fwd[t] = sum_{s <= t} (C[t] . B[s]) * exp(a[s+1] + ... + a[t]) * delta[s] * x[s]      (causal)
    y_bwd[t] = sum_{s >= t} (C[t] . B[s]) * exp(a'[t] + ... + a'[s-1]) * delta'[s] * x[s]   (anti-causal)

y_fwd is the Mamba-2 recurrence h[t] = exp(a[t]) h[t-1] + delta[t] B[t] x[t]^T, y[t] = C[t] h[t]; y_bwd is the
same recurrence run from the last token to the first, i.e. on the flipped sequence, but written here (and in
the kernels) in the original token order. Both directions include the diagonal term s = t, as Vim's two summed
causal scans do. This is the quadratic (L x L) form, in the input dtype (float64 inputs: a float64 reference),
meant to be obviously right, not fast: ``cpu.py`` is the chunked form for real lengths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bi_ssd_ref", "ssd_direction_ref"]


def ssd_direction_ref(
    x: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor, reverse: bool
) -> torch.Tensor:
    """One direction, quadratic form. x: (Bt, L, H, P); delta, a: (Bt, L, H); B, C: (Bt, L, G, N) -> (Bt, L, H, P)."""
    L, H = x.shape[1], x.shape[2]
    G = B.shape[2]
    heads_per_group = H // G
    Bh = B.repeat_interleave(heads_per_group, dim=2)  # [Bt, L, H, N]
    Ch = C.repeat_interleave(heads_per_group, dim=2)
    cum = torch.cumsum(a, dim=1)  # [Bt, L, H]: cum[t] = a[0] + ... + a[t]
    t = torch.arange(L, device=x.device)
    if not reverse:
        # exponent a[s+1] + ... + a[t] = cum[t] - cum[s], for s <= t
        seg = cum[:, :, None, :] - cum[:, None, :, :]  # [Bt, L(t), L(s), H]
        keep = t[:, None] >= t[None, :]
    else:
        # exponent a[t] + ... + a[s-1] = cum[s-1] - cum[t-1] = (cum[s] - a[s]) - (cum[t] - a[t]), for s >= t
        excl = cum - a
        seg = excl[:, None, :, :] - excl[:, :, None, :]
        keep = t[:, None] <= t[None, :]
    decay = torch.where(keep[None, :, :, None], seg, torch.full_like(seg, float("-inf"))).exp()
    scores = torch.einsum("bthn,bshn->btsh", Ch, Bh) * decay  # [Bt, L(t), L(s), H]
    return torch.einsum("btsh,bshp->bthp", scores, x * delta[..., None])


def bi_ssd_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The bidirectional SSD core (see the module docstring for shapes and the formula)."""
    if dt_bias is not None:
        dt = dt + dt_bias
    delta = F.softplus(dt)  # [Bt, L, 2, H]
    y = x * D[:, None]
    for direction in (0, 1):
        d = delta[:, :, direction]
        y = y + ssd_direction_ref(x, d, d * A[direction], B, C, reverse=direction == 1)
    if z is not None:
        y = y * F.silu(z)
    return y
