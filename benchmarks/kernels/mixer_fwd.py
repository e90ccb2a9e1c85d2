"""Inference forward of the bidirectional mixer core (``bimamba_inner`` without gradients) on one CUDA GPU:
the sequential kernel against the chunked associative-scan path it replaces, stage by stage, with the bound.

    python -m benchmarks.kernels.mixer_fwd --out mixer_fwd.json            # correctness, stages, bounds
    python -m benchmarks.kernels.mixer_fwd --launch-once 64,4097           # one forward (for ncu -k ...)

Bound per shape: max(bytes / copy bandwidth, exp2 count / exp2 rate), both rates measured in the same run; bytes
= xz read once (2E per token, its dtype) + y written once + x_dbl (2 (R + 2N) fp32 per token) written and read
once; exp2 count = 2 directions x B x L x E x N. Stages: ``conv_xproj`` (conv + SiLU + x_proj, both directions),
``seq_scan`` (the sequential kernel, dt projection fused), ``old_fwd`` (the whole forward of the path the
training forward still takes: conv_xproj, the fp32 dt GEMM, chunk states when chunked, the associative-scan
kernel), each alone, median of CUDA-event timings (triton.testing.do_bench).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.kernels.scan import bench, copy_bandwidth, exp2_rate, vim_params

SHAPES = ((64, 4097), (16, 16385), (8, 65537))  # (batch, tokens): vim_tiny at 1024², 2048², 4096² tiles
E, R, N = 384, 12, 16


def _ref_check(device) -> list[dict]:
    """The sequential kernel against the float64 reference at small shapes (odd lengths, chunks, dtypes)."""
    import vimscope_kernels as K
    from vimscope_kernels.bimamba.naive import bimamba_inner_ref

    rows = []
    for batch, length, chunk, dtype in ((2, 63, None, torch.float32), (2, 127, 40, torch.float32),
                                        (3, 200, None, torch.bfloat16), (2, 301, 64, torch.bfloat16)):  # fmt: skip
        params = [p.float() for p in vim_params(96, 6, torch.float32, seed=length)]
        xz = torch.randn(batch, length, 192, device=device)
        ref = bimamba_inner_ref(xz.double(), *(p.double() for p in params))
        with torch.no_grad():
            y = K.bimamba_inner(xz.to(dtype), *params, seq_chunk_len=chunk, seq_fwd=True)
        err = ((y.double() - ref).norm() / ref.norm()).item()
        rows.append({"B": batch, "L": length, "chunk": chunk, "dtype": str(dtype), "rel_err": err,
                     "ok": bool(err < (1e-5 if dtype == torch.float32 else 1.5e-2))})  # fmt: skip
    from vimscope_kernels import add_rmsnorm
    from vimscope_kernels.rmsnorm.naive import add_rmsnorm_ref

    hidden, residual = torch.randn(4, 999, 192, device=device).bfloat16(), torch.randn(4, 999, 192, device=device)
    weight = torch.rand(192, device=device).bfloat16()
    y, r = add_rmsnorm(hidden, residual, weight, 1e-5, backend="triton")
    y_ref, r_ref = add_rmsnorm_ref(hidden.double(), residual.double(), weight.double(), 1e-5)
    err = ((y.double() - y_ref).norm() / y_ref.norm()).item()
    rows.append({"op": "add_rmsnorm", "rel_err": err, "residual_err": (r.double() - r_ref).abs().max().item(),
                 "ok": bool(err < 1e-2)})  # fmt: skip
    return rows


def _inputs(batch: int, length: int, device, dtype=torch.bfloat16):
    params = [p.float() for p in vim_params(E, R, torch.float32)]
    xz = torch.randn(batch, length, 2 * E, device=device).to(dtype)
    return xz, params


def _stages(batch: int, length: int, device, variants: dict) -> dict:
    """Median ms of each stage and variant at one shape, plus the agreement of the new and old outputs."""
    import vimscope_kernels as K
    from vimscope_kernels.bimamba import fwd, naive, seq
    from vimscope_kernels.bimamba import params as P
    from vimscope_kernels.common.config import scan_config

    xz, params = _inputs(batch, length, device)
    p = P.stack_params(dict(zip(naive.PARAM_NAMES, params)), E)
    x = xz[..., :E]
    conv_args = (p["conv_w"], p["conv_b"], p["x_proj_w"])
    out = {"B": batch, "L": length}
    ref = fwd.conv_xproj_forward(x.float(), p["conv_w"], p["conv_b"], p["x_proj_w"], "fused")  # tf32x3
    for mode in variants["conv"]:
        out[f"conv_xproj[{mode}]"] = bench(lambda m=mode: fwd.conv_xproj_forward(x, *conv_args, m))
        got = fwd.conv_xproj_forward(x, *conv_args, mode)
        out[f"conv_xproj_rel_to_fp32[{mode}]"] = ((got - ref).norm() / ref.norm()).item()
    x_dbl = fwd.conv_xproj_forward(x, *conv_args, "split")
    for name, launch in variants["seq"].items():
        cfg = scan_config(batch, length, E, device, dtype=xz.dtype, **launch)
        out[f"seq_scan[{name}]"] = bench(lambda cfg=cfg: seq.seq_scan_forward(xz, x_dbl, p, cfg))
        out[f"seq_chunk_len[{name}]"] = cfg["seq_chunk_len"]
    with torch.no_grad():
        new = K.bimamba_inner(xz, *params, seq_fwd=True)
        old = K.bimamba_inner(xz, *params, seq_fwd=False)
        old32 = K.bimamba_inner(xz.float(), *params, seq_fwd=False)
        out["new_vs_old_fp32_rel"] = ((new.float() - old32).norm() / old32.norm()).item()
        out["old_bf16_vs_old_fp32_rel"] = ((old.float() - old32).norm() / old32.norm()).item()
        out["total_new"] = bench(lambda: K.bimamba_inner(xz, *params, seq_fwd=True))
        out["total_old_bf16"] = bench(lambda: K.bimamba_inner(xz, *params, seq_fwd=False))
        out["total_old_fp32_input"] = bench(lambda: K.bimamba_inner(xz.float(), *params, seq_fwd=False))
    return out


def _bounds(batch: int, length: int, rates: dict) -> dict:
    tokens = batch * length
    nbytes = tokens * (2 * E * 2 + E * 2 + 2 * 2 * (R + 2 * N) * 4)
    exps = 2 * tokens * E * N
    return {"bytes": nbytes, "exp2": exps, "bytes_ms": nbytes / rates["copy_Bps"] * 1e3,
            "exp_ms": exps / rates["exp2_per_s"] * 1e3}  # fmt: skip


VARIANTS = {
    "conv": ("fused", "split"),
    "seq": {"be32": {"seq_block_e": 32},
            "be32_poly4": {"seq_block_e": 32, "seq_exp_poly": 4}},
}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--launch-once", help="B,L: run one forward of each path (for ncu) and exit")
    ap.add_argument("--shapes", default=";".join(f"{b},{n}" for b, n in SHAPES), help="B,L;B,L;... to time")
    args = ap.parse_args(argv)
    device = torch.device("cuda")
    if args.launch_once:
        import vimscope_kernels as K

        batch, length = (int(v) for v in args.launch_once.split(","))
        xz, params = _inputs(batch, length, device)
        with torch.no_grad():
            K.bimamba_inner(xz, *params, seq_fwd=True)
            K.bimamba_inner(xz.float(), *params, seq_fwd=False)
        torch.cuda.synchronize()
        return 0
    result = {"card": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    result["rates"] = {"copy_Bps": copy_bandwidth(), "exp2_per_s": exp2_rate()}
    result["reference_checks"] = _ref_check(device)
    print(json.dumps(result["reference_checks"], indent=1), flush=True)
    rows = []
    for batch, length in (tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")):
        row = _stages(batch, length, device, VARIANTS) | {"bound": _bounds(batch, length, result["rates"])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result["rows"] = rows
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
