"""Compile every kernel of bimamba_inner (forward + backward) for a GPU target without a GPU, and report registers,
spills and local memory per kernel: the compiler's resource report costs no device time.

Runs the real orchestration on small CPU tensors with kernel launches replaced by ``triton.compile`` for the target
(sm_90 by default) and ``cuobjdump --dump-resource-usage`` on the cubin.

    python benchmarks/compile_report.py --dtype bf16 --block-e 32 --block-t 16 --num-warps 4
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _signature(fn, args, kwargs):
    names = fn.arg_names
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    options = {k: v for k, v in kwargs.items() if k not in names}
    types = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}
    sig, consts = {}, {}
    for param, name in zip(fn.params, names):
        value = bound[name]
        if param.is_constexpr or value is None:
            sig[name], consts[name] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            sig[name] = "*" + types[value.dtype]
        elif isinstance(value, bool):
            sig[name] = "i1"
        elif isinstance(value, int):
            sig[name] = "i64" if abs(value) >= 2**31 else "i32"
        elif isinstance(value, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{name}: {type(value)}")
    return sig, consts, options


def compile_only(arch: int, report: dict):
    """Patch JITFunction.run: compile for the target, record resources, launch nothing."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"

    def run(self, *args, grid, warmup, **kwargs):
        sig, consts, options = _signature(self, args, kwargs)
        key = (self.fn.__name__, tuple(sorted((k, str(v)) for k, v in consts.items())), str(options))
        if key in report:
            return None
        compiled = triton.compile(ASTSource(self, sig, consts), target=GPUTarget("cuda", arch, 32), options=options)
        with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
            f.write(compiled.asm["cubin"])
        usage = subprocess.run([str(cuobjdump), "--dump-resource-usage", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        fields = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", usage.stdout))
        report[key] = {
            "kernel": self.fn.__name__,
            "num_warps": compiled.metadata.num_warps,
            **{k.lower(): int(v) for k, v in fields.items()},
            "spill_stores": len(re.findall(r"\bST\.L\b|\bSTL\b", compiled.asm.get("sass", "") or "")),
        }
        return None

    JITFunction.run = run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--channels", type=int, default=384)
    ap.add_argument("--rank", type=int, default=12)
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--chunk-len", type=int, default=256)
    for name in ("block-e", "block-t", "num-warps", "bwd-block-e", "bwd-num-warps"):
        ap.add_argument("--" + name, type=int)
    args = ap.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(ROOT / "tests" / ".."))
    report: dict = {}
    compile_only(args.arch, report)
    import vimscope_kernels
    from vimscope_kernels.selective_scan import bimamba, config

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    channels, rank, n_state, length = args.channels, args.rank, 16, 1000
    launch = {k: getattr(args, k) for k in ("block_e", "block_t", "num_warps", "bwd_block_e", "bwd_num_warps")}
    launch = {k: v for k, v in launch.items() if v}
    cfg = config.scan_config(2, length, channels, torch.device("cpu"), chunk_len=args.chunk_len, **launch)
    xz = torch.zeros(2, length, 2 * channels, dtype=dtype)
    shapes = [(channels, 1, 4), (channels,), (channels, 1, 4), (channels,), (rank + 2 * n_state, channels),
              (rank + 2 * n_state, channels), (channels, rank), (channels, rank), (channels,), (channels,),
              (channels, n_state), (channels, n_state), (channels,), (channels,)]  # fmt: skip
    params = dict(zip(bimamba._PARAM_NAMES, (torch.zeros(s, dtype=dtype) for s in shapes)))
    p = bimamba._stack(params, channels)
    y, x_dbl, h_in = bimamba.bimamba_forward(xz, p, cfg)
    bimamba.bimamba_backward(xz, x_dbl, h_in, torch.zeros_like(y), p, cfg)
    del vimscope_kernels
    print(f"{args.dtype} E={channels} cfg={ {k: cfg[k] for k in sorted(cfg)} }")
    for row in report.values():
        print(
            f"  {row['kernel']:28s} warps={row['num_warps']} regs={row.get('reg')} stack={row.get('stack')} "
            f"local={row.get('local')} shared={row.get('shared')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
