"""Triton forward of the bidirectional SSD: one chunked scan kernel for both directions, then the epilogue.

``_ssd_scan_fwd_kernel``: one program per (batch, head, direction) walks the chunks of the sequence in its scan
order (ascending for direction 0, descending for direction 1: only the token index is mirrored, no flipped
copy) and carries the (N x P) state in registers. Per chunk of Q tokens, on tensor cores (``tl.dot``):
    S = C B^T                         [Q, Q]   scores
    y = (S * decay) (delta x)         [Q, P]   in-chunk outputs, decay[t, s] = exp(cum[t] - cum[s]) for s <= t
    y += exp(cum) * (C h)             [Q, P]   what earlier chunks left in the state
    h = exp(cum[-1]) h + (B * exp(cum[-1] - cum) * delta)^T x      [N, P]
with cum the in-chunk cumulative sum of a = delta * A (in scan order, in log2 units for exp2). Each direction
writes its own output plane; ``_ssd_out_kernel`` sums the two planes, adds D x and applies the silu(z) gate.
Optionally (``LAUNCH["segments"]``) each sequence is cut into segments scanned in parallel, whose carried states
``_ssd_carry_kernel`` adds afterwards.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common.config import interpreted, prepare_launch

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def mm(a, b, F32: tl.constexpr):
    """a @ b on tensor cores, float32 accumulation. F32 multiplies float32 operands at near-float32 precision (tf32x3:
    three tf32 products, not one): for float32 inputs, whose callers expect float32 results, and in the CPU
    interpreter, whose bf16 dot is wrong in Triton 3.6."""
    if F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32x3")
    return tl.dot(a, b)


@triton.jit
def softplus_f32(v):
    return tl.where(v > 20.0, v, tl.log(1.0 + tl.exp(tl.minimum(v, 20.0))))


@triton.jit
def load_chunk(
    x_ptr,
    dt_ptr,
    b_ptr,
    c_ptr,
    i_b,
    i_h,
    i_g,
    d,
    c,
    L,
    A,
    bias,
    s_xb,
    s_xl,
    s_xh,
    s_db,
    s_dl,
    s_dd,
    s_dh,
    s_bb,
    s_bl,
    s_bg,
    s_cb,
    s_cl,
    s_cg,
    Q: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
):
    """Chunk ``c`` in direction ``d``'s scan order: positions, mask, x, delta, B, C and the log2 cumsum of a."""
    o_q = tl.arange(0, Q)
    o_u = c * Q + o_q  # scan-order index
    m_t = o_u < L
    o_t = tl.where(d == 0, o_u, L - 1 - o_u).to(tl.int64)  # token index in the original order
    o_p = tl.arange(0, P)
    o_n = tl.arange(0, N)
    b_x = tl.load(x_ptr + i_b * s_xb + i_h * s_xh + o_t[:, None] * s_xl + o_p[None, :], mask=m_t[:, None], other=0.0)
    b_raw = tl.load(dt_ptr + i_b * s_db + d * s_dd + i_h * s_dh + o_t * s_dl, mask=m_t, other=0.0).to(tl.float32)
    b_dt = tl.where(m_t, softplus_f32(b_raw + bias), 0.0)  # [Q]
    b_B = tl.load(b_ptr + i_b * s_bb + i_g * s_bg + o_t[:, None] * s_bl + o_n[None, :], mask=m_t[:, None], other=0.0)
    b_C = tl.load(c_ptr + i_b * s_cb + i_g * s_cg + o_t[:, None] * s_cl + o_n[None, :], mask=m_t[:, None], other=0.0)
    b_cum = tl.cumsum(b_dt * (A * LOG2E), axis=0)  # [Q], log2 units, non-increasing
    return o_t, m_t, b_x, b_raw, b_dt, b_B, b_C, b_cum


@triton.jit
def chunk_decay(b_cum, Q: tl.constexpr):
    """decay[t, s] = 2^(cum[t] - cum[s]) for s <= t (scan order), 0 above the diagonal; and the chunk's last cum."""
    o_q = tl.arange(0, Q)
    m_causal = o_q[:, None] >= o_q[None, :]
    b_decay = tl.exp2(tl.where(m_causal, b_cum[:, None] - b_cum[None, :], float("-inf")))
    b_last = tl.sum(tl.where(o_q == Q - 1, b_cum, 0.0), axis=0)  # padded rows add 0, so this is the chunk total
    return b_decay, b_last


@triton.jit
def finish(b_y, b_x, z_ptr, dskip_ptr, i_b, i_h, o_t, m_t, s_zb, s_zl, s_zh, P: tl.constexpr, HAS_Z: tl.constexpr):
    """(y + D x) * silu(z) for one chunk's [Q, P] block of head ``i_h``, float32."""
    b_y += b_x.to(tl.float32) * tl.load(dskip_ptr + i_h).to(tl.float32)
    if HAS_Z:
        p_z = z_ptr + i_b * s_zb + i_h * s_zh + o_t[:, None] * s_zl + tl.arange(0, P)[None, :]
        b_z = tl.load(p_z, mask=m_t[:, None], other=0.0).to(tl.float32)
        b_y = b_y * b_z * tl.sigmoid(b_z)
    return b_y


@triton.jit
def _ssd_scan_fwd_kernel(
    x_ptr,
    dt_ptr,
    a_ptr,
    bias_ptr,
    b_ptr,
    c_ptr,
    y_ptr,
    hseg_ptr,
    z_ptr,
    dskip_ptr,
    L,
    H,
    HPG,
    CPS,
    D0,
    s_xb,
    s_xl,
    s_xh,
    s_db,
    s_dl,
    s_dd,
    s_dh,
    s_bb,
    s_bl,
    s_bg,
    s_cb,
    s_cl,
    s_cg,
    s_yd,
    s_yb,
    s_yl,
    s_yh,
    s_zb,
    s_zl,
    s_zh,
    Q: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    F32: tl.constexpr,
    SPLIT: tl.constexpr,
    FINAL: tl.constexpr,
    HAS_Z: tl.constexpr,
):
    """Grid (Bt * H, directions, segments); direction D0 + program_id(1). FINAL (direction 1 of an inference
    whose direction 0 already wrote y): adds that y, D x and the silu(z) gate, as ``_ssd_out_kernel`` does."""
    i_bh = tl.program_id(0).to(tl.int64)
    d = D0 + tl.program_id(1)
    k = tl.program_id(2)  # segment of CPS chunks (scan order); SPLIT: more than one segment
    i_b = i_bh // H
    i_h = i_bh % H
    i_g = i_h // HPG
    A = tl.load(a_ptr + d * H + i_h).to(tl.float32)
    bias = tl.load(bias_ptr + d * H + i_h).to(tl.float32)
    o_p = tl.arange(0, P)
    o_n = tl.arange(0, N)
    b_h = tl.zeros([N, P], dtype=tl.float32)  # state entering the chunk (zero at the segment start)
    b_tot = 0.0  # log2 decay across the segment so far
    for c in range(k * CPS, tl.minimum((k + 1) * CPS, tl.cdiv(L, Q))):
        o_t, m_t, b_x, b_raw, b_dt, b_B, b_C, b_cum = load_chunk(
            x_ptr,
            dt_ptr,
            b_ptr,
            c_ptr,
            i_b,
            i_h,
            i_g,
            d,
            c,
            L,
            A,
            bias,
            s_xb,
            s_xl,
            s_xh,
            s_db,
            s_dl,
            s_dd,
            s_dh,
            s_bb,
            s_bl,
            s_bg,
            s_cb,
            s_cl,
            s_cg,
            Q,
            P,
            N,
        )
        b_decay, b_last = chunk_decay(b_cum, Q)
        b_S = mm(b_C, tl.trans(b_B), F32)  # [Q, Q]
        b_xdt = (b_x * b_dt[:, None]).to(b_x.dtype)  # [Q, P]
        b_y = mm((b_S * b_decay).to(b_x.dtype), b_xdt, F32)  # [Q, P]
        b_y += mm(b_C, b_h.to(b_C.dtype), F32) * tl.exp2(b_cum)[:, None]
        b_Bw = (b_B * (tl.exp2(b_last - b_cum) * b_dt)[:, None]).to(b_B.dtype)  # [Q, N]
        b_h = b_h * tl.exp2(b_last) + mm(tl.trans(b_Bw), b_x, F32)  # [N, P]
        b_tot += b_last
        p_y = y_ptr + d * s_yd + i_b * s_yb + i_h * s_yh + o_t[:, None] * s_yl + o_p[None, :]
        if FINAL:  # the same sums in the same order as _ssd_out_kernel; later segments finish after their carry
            b_y += tl.load(p_y, mask=m_t[:, None], other=0.0).to(tl.float32)
            b_done = finish(b_y, b_x, z_ptr, dskip_ptr, i_b, i_h, o_t, m_t, s_zb, s_zl, s_zh, P, HAS_Z)
            b_y = tl.where(k == 0, b_done, b_y)
        tl.store(p_y, b_y.to(y_ptr.dtype.element_ty), mask=m_t[:, None])
    if SPLIT:  # the segment's own final state and its total log2 decay, (Bt, 2, H, S, N * P + 1) float32
        p_seg = hseg_ptr + (((i_b * 2 + d) * H + i_h) * tl.num_programs(2) + k) * (N * P + 1)
        tl.store(p_seg + o_n[:, None] * P + o_p[None, :], b_h)
        tl.store(p_seg + N * P, b_tot)


@triton.jit
def _ssd_carry_kernel(
    dt_ptr,
    a_ptr,
    bias_ptr,
    c_ptr,
    carry_ptr,
    y_ptr,
    x_ptr,
    z_ptr,
    dskip_ptr,
    L,
    H,
    HPG,
    CPS,
    S,
    D0,
    s_xb,
    s_xl,
    s_xh,
    s_zb,
    s_zl,
    s_zh,
    s_db,
    s_dl,
    s_dd,
    s_dh,
    s_cb,
    s_cl,
    s_cg,
    s_yd,
    s_yb,
    s_yl,
    s_yh,
    Q: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    F32: tl.constexpr,
    FINAL: tl.constexpr,
    HAS_Z: tl.constexpr,
):
    """Segments 1..S-1: y[t] += 2^(cum from the segment start to t) C[t] carry, carry = the state entering the
    segment from all earlier segments (``ssd_scan_fwd`` combines the segments' own states into it). Direction
    D0 + program_id(1); FINAL: y then holds both directions' sums and gets D x and the gate here."""
    i_bh = tl.program_id(0).to(tl.int64)
    d = D0 + tl.program_id(1)
    k = tl.program_id(2) + 1
    i_b = i_bh // H
    i_h = i_bh % H
    i_g = i_h // HPG
    A = tl.load(a_ptr + d * H + i_h).to(tl.float32)
    bias = tl.load(bias_ptr + d * H + i_h).to(tl.float32)
    o_q = tl.arange(0, Q)
    o_p = tl.arange(0, P)
    o_n = tl.arange(0, N)
    p_carry = carry_ptr + (((i_b * 2 + d) * H + i_h) * S + k) * (N * P) + o_n[:, None] * P + o_p[None, :]
    b_carry = tl.load(p_carry).to(c_ptr.dtype.element_ty)  # [N, P]
    b_run = 0.0  # log2 decay from the segment start to the chunk start
    for c in range(k * CPS, tl.minimum((k + 1) * CPS, tl.cdiv(L, Q))):
        o_u = c * Q + o_q
        m_t = o_u < L
        o_t = tl.where(d == 0, o_u, L - 1 - o_u).to(tl.int64)
        b_raw = tl.load(dt_ptr + i_b * s_db + d * s_dd + i_h * s_dh + o_t * s_dl, mask=m_t, other=0.0)
        b_dt = tl.where(m_t, softplus_f32(b_raw.to(tl.float32) + bias), 0.0)
        b_cum = tl.cumsum(b_dt * (A * LOG2E), axis=0)
        b_C = tl.load(
            c_ptr + i_b * s_cb + i_g * s_cg + o_t[:, None] * s_cl + o_n[None, :], mask=m_t[:, None], other=0.0
        )
        p_y = y_ptr + d * s_yd + i_b * s_yb + i_h * s_yh + o_t[:, None] * s_yl + o_p[None, :]
        b_y = tl.load(p_y, mask=m_t[:, None], other=0.0).to(tl.float32)
        b_y += mm(b_C, b_carry, F32) * tl.exp2(b_run + b_cum)[:, None]
        if FINAL:
            p_x = x_ptr + i_b * s_xb + i_h * s_xh + o_t[:, None] * s_xl + o_p[None, :]
            b_x = tl.load(p_x, mask=m_t[:, None], other=0.0)
            b_y = finish(b_y, b_x, z_ptr, dskip_ptr, i_b, i_h, o_t, m_t, s_zb, s_zl, s_zh, P, HAS_Z)
        tl.store(p_y, b_y.to(y_ptr.dtype.element_ty), mask=m_t[:, None])
        b_run += tl.sum(tl.where(o_q == Q - 1, b_cum, 0.0), axis=0)


@triton.jit
def _ssd_out_kernel(
    y2_ptr,
    x_ptr,
    z_ptr,
    d_ptr,
    out_ptr,
    T,
    E,
    P,
    s_y2d,
    s_x,
    s_z,
    s_o,
    HAS_Z: tl.constexpr,
    BT: tl.constexpr,
    BE: tl.constexpr,
):
    """out = (y_fwd + y_bwd + D x) * silu(z) over rows of tokens (x, z, out: (T, E) row-strided)."""
    o_t = (tl.program_id(0) * BT + tl.arange(0, BT)).to(tl.int64)
    o_e = tl.program_id(1) * BE + tl.arange(0, BE)
    m = (o_t[:, None] < T) & (o_e[None, :] < E)
    b_y = tl.load(y2_ptr + o_t[:, None] * E + o_e[None, :], mask=m, other=0.0).to(tl.float32)
    b_y += tl.load(y2_ptr + s_y2d + o_t[:, None] * E + o_e[None, :], mask=m, other=0.0).to(tl.float32)
    b_x = tl.load(x_ptr + o_t[:, None] * s_x + o_e[None, :], mask=m, other=0.0).to(tl.float32)
    b_D = tl.load(d_ptr + o_e // P, mask=o_e < E, other=0.0).to(tl.float32)
    b_y += b_x * b_D[None, :]
    if HAS_Z:
        b_z = tl.load(z_ptr + o_t[:, None] * s_z + o_e[None, :], mask=m, other=0.0).to(tl.float32)
        b_y = b_y * b_z * tl.sigmoid(b_z)
    tl.store(out_ptr + o_t[:, None] * s_o + o_e[None, :], b_y.to(out_ptr.dtype.element_ty), mask=m)


# ----------------------------------------------------------------------------------------------- launchers


def scan_strides(x, dt, B, C):
    return (
        x.stride(0),
        x.stride(1),
        x.stride(2),
        dt.stride(0),
        dt.stride(1),
        dt.stride(2),
        dt.stride(3),
        B.stride(0),
        B.stride(1),
        B.stride(2),
        C.stride(0),
        C.stride(1),
        C.stride(2),
    )


def segments_for(x: torch.Tensor, chunks: int, programs: int) -> int:
    """How many segments to cut each sequence into: 1 while (batch, head, direction) programs fill every SM, else
    enough for about four programs per SM (at most one segment per chunk). ``LAUNCH["segments"]`` overrides.
    On the H100 (ssd_h100_2026-12-07.json) the split took 8 x 65,536 tokens (96 programs) from 4.76 to 3.76 ms
    and slowed 16 x 16,384 (192 programs, 3 segments) from 1.49 to 1.84 ms."""
    from .function import LAUNCH

    if LAUNCH.get("segments"):
        return max(1, min(int(LAUNCH["segments"]), chunks))
    if not x.is_cuda:
        return 1
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    if programs >= sms:
        return 1
    return max(1, min(chunks, -(-4 * sms // programs)))


def segment_plan(x: torch.Tensor, chunk: int, programs: int) -> tuple[int, int]:
    """(segments S, chunks per segment) for ``programs`` (batch, head[, direction]) programs: no empty segment."""
    chunks = triton.cdiv(x.shape[1], chunk)
    cps = triton.cdiv(chunks, segments_for(x, chunks, programs))
    return triton.cdiv(chunks, cps), cps


def scan_meta(x: torch.Tensor, chunk: int, N: int, num_warps: int, num_stages: int) -> dict:
    """The scan and carry kernels' compile-time arguments."""
    f32 = interpreted() or x.dtype == torch.float32
    return dict(Q=chunk, P=x.shape[3], N=N, F32=f32, num_warps=num_warps, num_stages=num_stages)


def ssd_scan_fwd(x, dt, A, bias, B, C, chunk: int, num_warps: int = 4, num_stages: int = 1) -> torch.Tensor:
    """Both directions' SSD outputs, (2, Bt, L, H, P) in x's dtype (no D, no gate).

    Long sequences at small batch are cut into S segments scanned in parallel from a zero state; the states they
    end with are chained here (S small steps on (Bt, 2, H, N, P)) and ``_ssd_carry_kernel`` adds what each
    segment receives from the earlier ones."""
    prepare_launch()
    Bt, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    S, cps = segment_plan(x, chunk, Bt * H * 2)
    y2 = torch.empty((2, Bt, L, H, P), device=x.device, dtype=x.dtype)
    hseg = torch.empty((Bt, 2, H, S, N * P + 1), device=x.device, dtype=torch.float32) if S > 1 else y2
    y_strides = (y2.stride(0), y2.stride(1), y2.stride(2), y2.stride(3))
    meta = scan_meta(x, chunk, N, num_warps, num_stages)
    _ssd_scan_fwd_kernel[(Bt * H, 2, S)](
        x, dt, A, bias, B, C, y2, hseg, x, A, L, H, H // G, cps, 0, *scan_strides(x, dt, B, C), *y_strides,
        0, 0, 0, SPLIT=S > 1, FINAL=False, HAS_Z=False, **meta,
    )  # fmt: skip
    if S > 1:
        _ssd_carry_kernel[(Bt * H, 2, S - 1)](
            dt, A, bias, C, carries(hseg, N, P), y2, x, x, A, L, H, H // G, cps, S, 0, 0, 0, 0, 0, 0, 0,
            dt.stride(0), dt.stride(1), dt.stride(2), dt.stride(3), C.stride(0), C.stride(1), C.stride(2),
            *y_strides, FINAL=False, HAS_Z=False, **meta,
        )  # fmt: skip
    return y2


def carries(hseg: torch.Tensor, N: int, P: int, directions=slice(None)) -> torch.Tensor:
    """(Bt, 2, H, S, N, P): the state entering segment k from segments 0..k-1, chained from each segment's own
    final state and total decay (``hseg``, as the scan kernel stores them), for the given directions."""
    Bt, _, H, S, _ = hseg.shape
    own, decay = hseg[..., :-1].view(Bt, 2, H, S, N, P), torch.exp2(hseg[..., -1])
    carry = torch.zeros_like(own)
    d = directions
    for k in range(1, S):
        carry[:, d, :, k] = decay[:, d, :, k - 1, None, None] * carry[:, d, :, k - 1] + own[:, d, :, k - 1]
    return carry


def ssd_infer(x, dt, A, bias, B, C, z, D, chunk: int, num_warps: int = 4, num_stages: int = 1) -> torch.Tensor:
    """Inference: (y_fwd + y_bwd + D x) * silu(z), (Bt, L, H, P) in x's dtype, with no buffer of two planes.

    Direction 0 writes its y into the output, then direction 1 adds its own y, D x and the gate there: one pass
    over the activations less than the planes and ``ssd_out``, and half the memory. Each direction is cut into
    segments when its (batch, head) programs alone do not fill the GPU; direction 1's later segments then finish
    in the carry kernel, after the state from earlier segments is added."""
    prepare_launch()
    Bt, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    S, cps = segment_plan(x, chunk, Bt * H)
    out = torch.empty((Bt, L, H, P), device=x.device, dtype=x.dtype)
    hseg = torch.empty((Bt, 2, H, S, N * P + 1), device=x.device, dtype=torch.float32) if S > 1 else out
    meta = scan_meta(x, chunk, N, num_warps, num_stages) | dict(HAS_Z=z is not None)
    zp = z if z is not None else x
    zs = (z.stride(0), z.stride(1), z.stride(2)) if z is not None else (0, 0, 0)
    ys = (0, out.stride(0), out.stride(1), out.stride(2))
    for d in (0, 1):
        _ssd_scan_fwd_kernel[(Bt * H, 1, S)](
            x, dt, A, bias, B, C, out, hseg, zp, D, L, H, H // G, cps, d, *scan_strides(x, dt, B, C), *ys, *zs,
            SPLIT=S > 1, FINAL=d == 1, **meta,
        )  # fmt: skip
        if S > 1:
            _ssd_carry_kernel[(Bt * H, 1, S - 1)](
                dt, A, bias, C, carries(hseg, N, P, slice(d, d + 1)), out, x, zp, D, L, H, H // G, cps, S, d,
                x.stride(0), x.stride(1), x.stride(2), *zs,
                dt.stride(0), dt.stride(1), dt.stride(2), dt.stride(3), C.stride(0), C.stride(1), C.stride(2),
                *ys, FINAL=d == 1, **meta,
            )  # fmt: skip
    return out


def rows(t: torch.Tensor) -> tuple[int, int]:
    """(token count, row stride) of a (Bt, L, H, P) view whose (H, P) block is contiguous and whose rows are
    evenly spaced (a slice of the in_proj output is)."""
    if t.stride(3) != 1 or t.stride(2) != t.shape[3] or t.stride(0) != t.stride(1) * t.shape[1]:
        raise ValueError("expected a (Bt, L, H, P) view with contiguous (H, P) rows")
    return t.shape[0] * t.shape[1], t.stride(1)


def ssd_out(y2, x, z, D, out=None) -> torch.Tensor:
    """(y2[0] + y2[1] + D x) * silu(z), in x's dtype, (Bt, L, H, P) contiguous. ``out``: where to write; y2[0]
    is allowed (each program reads its elements of y2 before it writes them there), which is what inference
    does: y2 is not kept for a backward, so the output needs no buffer of its own."""
    Bt, L, H, P = x.shape
    if out is None:
        out = torch.empty((Bt, L, H, P), device=x.device, dtype=x.dtype)
    T, s_x = rows(x)
    s_z = rows(z)[1] if z is not None else 0
    E = H * P
    BT, BE = 32, min(128, triton.next_power_of_2(E))
    grid = (triton.cdiv(T, BT), triton.cdiv(E, BE))
    _ssd_out_kernel[grid](
        y2,
        x,
        z if z is not None else x,
        D,
        out,
        T,
        E,
        P,
        y2.stride(0),
        s_x,
        s_z,
        E,
        HAS_Z=z is not None,
        BT=BT,
        BE=BE,
        num_warps=4,
    )
    return out
