"""One forward pass per batch, as the tile loop runs it: eager, or replayed from a CUDA graph.

A batch of 256 px tiles runs the ~400 kernels of a Vim backbone in about 20 ms on an H100, and each launch is a
Python call that needs the GIL. The tile loop shares that lock with the threads that place, encode and write the
previous batch and with the followers (instances, class regions): every time one of them holds it, the launch
queue runs dry and the GPU waits (measured: the model part of an end-to-end run took twice its time alone). Every
batch has the same shape (short ones are padded), so the pass is captured once as a CUDA graph and replayed: one
call per batch, whatever the depth of the model. Replays run the same kernels in the same order as the eager pass,
so their outputs are the same; a model that cannot be captured (a host sync inside, a CPU device) runs eagerly.
"""

from __future__ import annotations

import logging
import warnings

import torch

from vimscope.pipeline.model import LoadedModel

log = logging.getLogger("vimscope.pipeline")


def forward(lm: LoadedModel, x: torch.Tensor, segmentation: bool, features: bool, *, cache: bool = True) -> dict:
    """The model's outputs on the normalised batch ``x``: its maps (``logits`` and extras) and/or ``features``."""
    out: dict = {}
    cpu = lm.device.type == "cpu"
    if cpu:  # channels-last input: the decoder's convolutions take 10 % less CPU time (vim_tiny_nuclei, bf16)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), lm.autocast(cache):
        if segmentation:
            y = lm.module(x)
            out.update(y if isinstance(y, dict) else {"logits": y})
        if features:
            out["features"] = lm.module.features(x)
    return {k: v.contiguous() for k, v in out.items()} if cpu else out


class ModelStep:
    """``step(x) -> outputs`` for the tile loop; with ``graphs`` (CUDA only) the pass is a CUDA graph replay.

    The graph is captured before the loop (``prepare``) or at the first batch of a new shape, after two eager
    warm-up passes on a side stream (Triton compiles and picks its launches there). Outputs are copies: the graph's
    own buffers are rewritten by the next replay while the writer thread may still hold the previous batch's values.
    """

    WARMUP = 2

    def __init__(self, lm: LoadedModel, segmentation: bool, features: bool, graphs: bool = True) -> None:
        self.lm, self.segmentation, self.features = lm, segmentation, features
        self.graphs = graphs and lm.device.type == "cuda"
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, dict]] = {}
        self.replays = 0

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Capture the graph for batches of ``shape`` now, on a blank batch (before the loader's threads start)."""
        if self.graphs:
            self._entry(torch.zeros(shape, device=self.lm.device))

    def eager(self, x: torch.Tensor) -> dict:
        return forward(self.lm, x, self.segmentation, self.features)

    def __call__(self, x: torch.Tensor) -> dict:
        entry = self._entry(x) if self.graphs else None
        if entry is None:
            return self.eager(x)
        graph, static_x, static_out = entry
        static_x.copy_(x)
        graph.replay()
        self.replays += 1
        return {k: v.clone() for k, v in static_out.items()}

    def _entry(self, x: torch.Tensor):
        """The graph for batches like ``x`` (captured on ``x`` the first time); None if it cannot be captured."""
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            entry = self._capture(x)
            if entry is None:
                return None
            self._graphs[key] = entry
        return self._graphs[key]

    def _capture(self, x: torch.Tensor):
        static_x = x.clone()
        side = torch.cuda.Stream(self.lm.device)
        side.wait_stream(torch.cuda.current_stream(self.lm.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP):
                    forward(self.lm, static_x, self.segmentation, self.features, cache=False)
            torch.cuda.current_stream(self.lm.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the loader's threads keep using the device (their own streams) during the capture
            with warnings.catch_warnings(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
                warnings.filterwarnings("ignore", "The CUDA Graph is empty")  # a model of views only: fine
                static_out = forward(self.lm, static_x, self.segmentation, self.features, cache=False)
        except Exception as e:  # noqa: BLE001 - any model that cannot be captured still runs, eagerly
            log.info("%s: the model runs eagerly (CUDA graph capture failed: %s)", self.lm.name, str(e).split("\n")[0])
            self.graphs = False
            torch.cuda.synchronize(self.lm.device)
            return None
        return graph, static_x, static_out
