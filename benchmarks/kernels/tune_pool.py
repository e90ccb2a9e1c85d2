"""tune_scan's parallel compile pool: every candidate configuration compiled in spawned worker processes, so its
kernels are in Triton's disk cache before the timing (which then never waits for ptxas)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import time

import torch

from benchmarks.kernels.tune_shape import DTYPES, E, R


def _key(launch: dict) -> str:
    return json.dumps(launch, sort_keys=True)


def _compile_worker(launch: dict, dtype_name: str) -> dict:
    """Forward (+ backward for the default and backward candidates) of one configuration at small sizes, with and
    without chunking: compiles every scan kernel the real shapes launch with it (their specialisation depends on E,
    N, R, dtype and the constexprs, not on B or L) into Triton's disk cache."""
    t0 = time.time()
    try:
        import vimscope_kernels
        from triton.runtime.jit import JITFunction

        from benchmarks.kernels.scan import vim_params

        if not getattr(JITFunction, "_compile_only", False):  # compile, never launch: the GPU stays free for timing
            launch_fn = JITFunction.run
            JITFunction.run = lambda self, *a, grid, warmup, **kw: launch_fn(self, *a, grid=grid, warmup=True, **kw)
            JITFunction._compile_only = True

        dtype = DTYPES[dtype_name]
        params = vim_params(E, R, dtype)
        tile = max(launch.get("block_t", 16), launch.get("bwd_block_t", 0) or 0)
        chunk = max(64, 4 * tile)
        pinned = launch | {"chunk_len": chunk, "bwd_chunk_len": chunk}
        backward = not launch or any(k.startswith("bwd_") for k in launch)
        for length in (2 * chunk + 1, chunk - 1):  # several chunks (HAS_INIT) and one
            xz = torch.randn(2, length, 2 * E, device="cuda").to(dtype).requires_grad_(backward)
            with torch.set_grad_enabled(backward):
                y = vimscope_kernels.bimamba_inner(xz, *params, **pinned)
            if backward:
                y.backward(torch.ones_like(y))
        torch.cuda.synchronize()
        return {"ok": True, "seconds": time.time() - t0}
    except Exception as e:  # noqa: BLE001 - reported, the candidate is skipped
        return {"ok": False, "seconds": time.time() - t0, "error": repr(e)[:400]}


class Compiler:
    """Submits every candidate to a pool of spawned processes; ``ready`` waits for one within a deadline."""

    def __init__(self, launches: list[dict], dtypes: list[str], workers: int):
        self.futures: dict[tuple, cf.Future] = {}
        self.t0 = time.time()
        self.pool = None
        if workers <= 0 or not torch.cuda.is_available():
            return
        try:
            ctx = multiprocessing.get_context("spawn")
            self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            for dtype in dtypes:
                for launch in launches:
                    self.futures[(dtype, _key(launch))] = self.pool.submit(_compile_worker, launch, dtype)
        except Exception as e:  # noqa: BLE001 - without a pool, kernels compile on first use
            print(f"compile pool unavailable ({e!r}); compiling in-process", flush=True)
            self.pool = None

    def ready(self, launch: dict, dtype: str, timeout: float) -> tuple[bool, str]:
        """(True, note) when the kernels are in the disk cache, or when the worker failed (the candidate then
        compiles in-process, and a real compile error is reported by the measurement); (False, why) on timeout."""
        fut = self.futures.get((dtype, _key(launch)))
        if fut is None:
            return True, ""
        try:
            res = fut.result(timeout=max(0.0, timeout))
        except cf.TimeoutError:
            return False, "not compiled in time"
        except Exception as e:  # noqa: BLE001 - a broken pool: compile in-process
            return True, f"compile worker failed: {e!r}"[:300]
        return True, "" if res["ok"] else f"compile worker: {res.get('error', '?')}"

    def summary(self) -> dict:
        out = {"tasks": len(self.futures), "done": 0, "ok": 0, "worker_s": 0.0, "errors": []}
        for (dtype, key), f in self.futures.items():
            if not f.done() or f.cancelled():
                continue
            out["done"] += 1
            try:
                res = f.result()
            except Exception as e:  # noqa: BLE001
                res = {"ok": False, "error": repr(e)[:200]}
            out["ok"] += bool(res["ok"])
            out["worker_s"] += res.get("seconds", 0.0)
            if not res["ok"]:
                out["errors"].append({"dtype": dtype, "launch": key, "error": res.get("error")})
        out["seconds_since_start"] = time.time() - self.t0
        return out

    def close(self) -> None:
        """Stop the workers now (a compile still running must not hold up the exit)."""
        if self.pool is None:
            return
        procs = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
