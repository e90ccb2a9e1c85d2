"""The inputs and measurements of tune_scan at one (L, B, dtype): CUDA-event timing with the L2 flushed, the forward,
backward and per-stage timings of one launch configuration, and its error against the default's outputs."""

from __future__ import annotations

import math
import statistics
import time

import torch

E, R, N = 384, 12, 16
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


class Timer:
    """Median of CUDA-event timings, the L2 flushed before each repetition; at least 3 and at most 100 repetitions,
    as many as fit ``rep_ms`` (a dry run on the CPU times one call with perf_counter)."""

    def __init__(self, rep_ms: float):
        self.rep_ms = rep_ms
        self.cuda = torch.cuda.is_available()
        self.flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda") if self.cuda else None

    def __call__(self, fn, reset=None) -> float:
        if not self.cuda:
            if reset:
                reset()
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
        if reset:
            reset()
        fn()  # warm-up
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if reset:
            reset()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        estimate = start.elapsed_time(end)
        n = int(min(100, max(3, self.rep_ms / max(estimate, 1e-3))))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for s, e in events:
            if reset:
                reset()
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in events)


# ----------------------------------------------------------------------------------------------- one shape


class Shape:
    """Inputs of one (L, B, dtype) and the measurements of configurations on them."""

    def __init__(self, length: int, batch: int, dtype_name: str, timer: Timer, device: str):
        from benchmarks.kernels.scan import vim_params

        self.L, self.B, self.dtype_name, self.timer = length, batch, dtype_name, timer
        dtype = DTYPES[dtype_name]
        g = torch.Generator(device=device).manual_seed(1)
        self.xz = torch.randn(batch, length, 2 * E, generator=g, device=device).to(dtype)
        self.dy = torch.randn(batch, length, E, generator=g, device=device).to(dtype)
        self.params = vim_params(E, R, dtype) if device == "cuda" else _cpu_params(dtype)
        self.xz_g = self.xz.clone().requires_grad_()
        self.params_g = [p.clone().requires_grad_() for p in self.params]
        self.reference: dict | None = None

    def _op(self, xz, params, launch):
        import vimscope_kernels

        return vimscope_kernels.bimamba_inner(xz, *params, backend="triton", **launch)

    def _zero_grads(self):
        for t in (self.xz_g, *self.params_g):
            t.grad = None

    def outputs(self, launch: dict) -> dict:
        """y and every gradient of one forward + backward."""
        self._zero_grads()
        y = self._op(self.xz_g, self.params_g, launch)
        y.backward(self.dy)
        out = {"y": y.detach(), "d_xz": self.xz_g.grad}
        out.update({f"d_p{i}": p.grad for i, p in enumerate(self.params_g)})
        self._zero_grads()
        return out

    def forward_output(self, launch: dict) -> torch.Tensor:
        with torch.no_grad():
            return self._op(self.xz, self.params, launch)

    def time_forward(self, launch: dict) -> float:
        def fwd():
            with torch.no_grad():
                self._op(self.xz, self.params, launch)

        return self.timer(fwd)

    def time_backward(self, launch: dict) -> float:
        self._zero_grads()
        y = self._op(self.xz_g, self.params_g, launch)
        return self.timer(lambda: torch.autograd.backward(y, self.dy, retain_graph=True), reset=self._zero_grads)

    def time_fwd_bwd(self, launch: dict) -> float:
        return self.timer(lambda: self._op(self.xz_g, self.params_g, launch).backward(self.dy), reset=self._zero_grads)

    def stages(self, launch: dict) -> dict:
        """Median ms of every kernel stage alone (bimamba.stages.stage_calls), forward then backward."""
        from vimscope_kernels.bimamba import stages
        from vimscope_kernels.common import config

        cfg = config.scan_config(self.B, self.L, E, self.xz.device, dtype=self.xz.dtype, **launch)
        calls = stages.stage_calls(self.xz, self.params, self.dy, cfg)
        return {name: self.timer(fn) for name, fn in calls.items()}

    def resolved(self, launch: dict) -> dict:
        """The configuration a launch dict resolves to here (chunk lengths, tiles, switches)."""
        from vimscope_kernels.common import config

        cfg = config.scan_config(self.B, self.L, E, self.xz.device, dtype=self.xz.dtype, **launch)
        return {k: cfg[k] for k in config.LAUNCH_KEYS if k in cfg} | {"n_chunks": cfg["n_chunks"]}


def _cpu_params(dtype):
    from tests.kernels.helpers import vim_params

    return [v.to(dtype) for v in vim_params(E, N, R).values()]


def max_rel(out, ref) -> float:
    out, ref = out.float(), ref.float()
    if not torch.isfinite(out).all():
        return math.inf
    scale = ref.abs().max().item()
    diff = (out - ref).abs().max().item()
    return diff / scale if scale > 0 else diff


def compare(out: dict, ref: dict) -> dict:
    return {k: max_rel(out[k], ref[k]) for k in ref}


def kernel_stats() -> dict:
    from vimscope_kernels.common import config

    return {k: {"regs": v.get("n_regs"), "spills": v.get("n_spills")} for k, v in config.KERNEL_STATS.items()}


def reset_stats() -> None:
    from vimscope_kernels.common import config

    config.KERNEL_STATS.clear()


def bounds(length: int, batch: int, dtype_name: str, rates: dict) -> dict:
    """The scan benchmark's bound: max(minimum bytes / copy bandwidth, exp2 count / exp2 rate) per pass."""
    size = torch.finfo(DTYPES[dtype_name]).bits // 8
    elems = batch * length * E
    out = {}
    for kind, nbytes, n_exp in (("fwd", 3 * elems * size, 2 * elems * N), ("fwd_bwd", 8 * elems * size,
                                                                               4 * elems * N)):  # fmt: skip
        t_bytes = nbytes / rates["copy_Bps"] * 1e3
        t_exp = n_exp / rates["exp2_per_s"] * 1e3
        out[kind] = {"ms": max(t_bytes, t_exp), "by": "bytes" if t_bytes >= t_exp else "exp2"}
    return out
