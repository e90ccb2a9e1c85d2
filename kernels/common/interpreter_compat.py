"""Two fixes for Triton 3.6's CPU interpreter (TRITON_INTERPRET=1, the CPU test path); GPU kernels never see them.

1. The interpreter keeps every scalar as a one-element array and turns it into a Python int with ``int(array)``,
   which NumPy 2.4 rejects for arrays that are not 0-d, so ``for i in range(n)`` with a run-time ``n`` fails.
   Scalars are indexed through their single element instead.
2. ``tl.associative_scan`` with a user combine function runs one Python call per *element* (122,880 calls for one
   small backward); the same sequential inclusive scan is done here with one call per step along the scan axis
   on whole slices, which gives identical results (the same combine, in the same order, per element).
   ``tl.reduce`` with a user combine (``tl.flip``'s xor steps, for one) likewise ran one call per element; it is
   folded here slice by slice along the reduced axis, in the same order.
3. Every call of a ``@triton.jit`` helper from inside a kernel re-patches the whole ``triton.language`` namespace
   (``inspect.getmembers`` over it, never undone): a quarter of the run time. The kernel launch has already patched
   that one shared module object, so helper calls skip it.
"""

from __future__ import annotations

import types

import numpy as np

_done = False


def patch_interpreter() -> None:
    """Idempotent; a Triton without these internals is left alone."""
    global _done
    if _done:
        return
    _done = True
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is not None:

        def patched(tensor, scope):
            original(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

        interpreter._patch_lang_tensor = patched
    scan_ops = getattr(interpreter, "ScanOps", None)
    if scan_ops is not None and hasattr(scan_ops, "generic_scan"):
        scan_ops.generic_scan = _sliced_scan
    reduce_ops = getattr(interpreter, "ReduceOps", None)
    if reduce_ops is not None and hasattr(reduce_ops, "generic_reduce") and hasattr(reduce_ops, "unravel"):
        reduce_ops.generic_reduce = _sliced_reduce
    function = getattr(interpreter, "InterpretedFunction", None)
    executor = getattr(interpreter, "GridExecutor", None)
    if function is not None and executor is not None and hasattr(function, "rewrite"):
        _skip_redundant_patching(interpreter, function, executor)


def _lang_modules(fn) -> frozenset:
    import triton.language as tl

    return frozenset(id(v) for v in fn.__globals__.values() if v is tl or v is tl.core)


def _skip_redundant_patching(interpreter, function, executor) -> None:
    """Helper calls skip ``_patch_lang`` when the running kernel already patched the same language modules."""
    active: list[frozenset] = [frozenset()]
    launch = executor.__call__
    device = function.__call__

    import triton.language as tl

    # triton.language's own jit helpers (zeros, sigmoid, cdiv...) see ``core``; patch it once per launch too
    core_probe = types.FunctionType(compile("def probe(): pass", "<probe>", "exec").co_consts[0], {"core": tl.core})

    def launch_call(self, *args, **kwargs):
        scope = interpreter._patch_lang(core_probe)
        active.append(_lang_modules(self.fn) | _lang_modules(core_probe))
        try:
            return launch(self, *args, **kwargs)
        finally:
            active.pop()
            scope.restore()

    def device_call(self, *args, **kwargs):
        if not (_lang_modules(self.fn) <= active[-1]):
            return device(self, *args, **kwargs)
        try:
            return self.rewrite()(*args, **kwargs)
        except Exception as e:
            raise interpreter.InterpreterError(repr(e)) from e

    executor.__call__ = launch_call
    function.__call__ = device_call


def _sliced_scan(self, input):
    """Inclusive scan along ``self.axis``: the combine function sees whole slices (vectorised over other axes)."""
    import triton.language as tl

    datas = [np.moveaxis(arg.handle.data, self.axis, 0) for arg in input]
    outs = [np.empty_like(d) for d in datas]
    for j in range(len(outs)):
        outs[j][0] = datas[j][0]
    for i in range(1, datas[0].shape[0]):
        acc = tuple(self.to_tensor(o[i - 1], arg.dtype) for o, arg in zip(outs, input))
        cur = tuple(self.to_tensor(d[i], arg.dtype) for d, arg in zip(datas, input))
        ret = self.combine_fn.fn(*acc, *cur)
        ret = ret if isinstance(ret, tuple) else (ret,)
        for j, r in enumerate(ret):
            outs[j][i] = r.handle.data if isinstance(r, tl.core.tensor) else r
    return [self.to_tensor(np.moveaxis(o, 0, self.axis), arg.dtype) for o, arg in zip(outs, input)]


def _sliced_reduce(self, input):
    """Left fold along ``self.axis`` with the combine function on whole slices (vectorised over the other axes)."""
    import triton.language as tl

    original_axis = self.axis
    input, axis = self.unravel(input, self.axis)
    datas = [np.moveaxis(arg.handle.data, axis, 0) for arg in input]
    input_shape = input[0].handle.data.shape
    acc = [np.array(d[0]) for d in datas]
    for i in range(1, datas[0].shape[0]):
        a = tuple(self.to_tensor(x, arg.dtype) for x, arg in zip(acc, input))
        c = tuple(self.to_tensor(np.array(d[i]), arg.dtype) for d, arg in zip(datas, input))
        ret = self.combine_fn.fn(*a, *c)
        ret = ret if isinstance(ret, tuple) else (ret,)
        acc = [
            np.array(r.handle.data if isinstance(r, tl.core.tensor) else r, dtype=d.dtype).reshape(d.shape[1:])
            for r, d in zip(ret, datas)
        ]
    out = []
    for data, arg in zip(acc, input):
        if self.keep_dims:
            if original_axis is not None:
                data = np.expand_dims(data, axis)
            else:
                for _ in range(len(input_shape)):
                    data = np.expand_dims(data, 0)
        elif original_axis is None:
            data = data.item()
        out.append(self.to_tensor(data, arg.dtype))
    return out
