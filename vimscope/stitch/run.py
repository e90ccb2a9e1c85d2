"""The run-level stitcher: which output groups exist, what each tile contributes, and where blending happens.

Groups: ``seg`` (class map, and probabilities plus any extra maps of the model, e.g. a nuclei model's boundary
map), ``image`` (the model's input pixels, cropped to tile cores), ``features`` (the token grid). In ``crop``
mode a tile's core is final the moment the tile is done, so only uint8 crops travel to the host; in ``cosine`` /
``gaussian`` mode tiles are blended with integer windows, on the GPU when the model runs there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vimscope.stitch.assembler import (
    NUMPY,
    ChunkAssembler,
    class_map,
    finalize_mean,
    finalize_split,
    quantise_probabilities,
)
from vimscope.stitch.device import (
    channels_last,
    fixed_point_int,
    fixed_point_probabilities,
    host,
    host_async,
    ops_for,
    placed_segmentation,
)
from vimscope.stitch.windows import window_2d
from vimscope.tiling import TileBatch, TileGeometry
from vimscope.types import Box


def _finalize_segmentation(n_classes: int, with_probabilities: bool):
    def finalize(acc, wsum, ops):
        out = {"classes": class_map(acc[..., :n_classes], ops)}
        if with_probabilities:
            out["probabilities"] = quantise_probabilities(acc, wsum, ops)
        return out

    return finalize


def _clip(box: Box, shape: tuple[int, int]) -> Box | None:
    return box.intersect(Box(0, 0, shape[1], shape[0]))


def _scaled(box: Box, stride: int) -> Box:
    """A box of output pixels on a grid ``stride`` times coarser (its start must lie on that grid)."""
    x0, y0 = box.x // stride, box.y // stride
    return Box(x0, y0, -(-box.x1 // stride) - x0, -(-box.y1 // stride) - y0)


GROUP_ARRAYS = {"seg": ("classes", "probabilities"), "image": ("image",), "features": ("features",)}  # per assembler


class RunStitcher:
    """All assemblers of a run; ``add_batch`` feeds one batch of model outputs and returns the finished blocks."""

    def __init__(
        self,
        plan,
        geom: TileGeometry,
        *,
        mode: str,
        chunk: int,
        n_classes: int = 0,
        extra_maps: Sequence[str] = (),
        sigmoid_maps: Sequence[str] = (),
        probabilities: bool = False,
        segmentation: bool = True,
        image_channels: int | None = None,
        feature_dim: int | None = None,
        feature_stride: int = 16,
        device: torch.device | str = "cpu",
        skip_tiles=(),
    ) -> None:
        self.mode = mode
        self.geom = geom
        self.shape = tuple(plan.out_shape)
        self.n_classes = n_classes
        self.extra_maps = list(extra_maps)
        self.sigmoid_maps = set(sigmoid_maps)  # extra maps the model returns before a sigmoid; others are clamped
        self.probabilities = probabilities
        self.device = torch.device(device)
        self.ops = ops_for(self.device) if mode != "crop" else NUMPY
        self.feature_stride = feature_stride
        self.halo, self.core = plan.halo, plan.tile - 2 * plan.halo
        tiles = plan.tiles
        windows = {i: _clip(geom.window(t.read_box), self.shape) for i, t in enumerate(tiles)}
        cores = {i: t.box for i, t in enumerate(tiles)}
        self.origins = {i: (w.x, w.y) for i, w in ((i, geom.window(t.read_box)) for i, t in enumerate(tiles))}
        self.assemblers: dict[str, ChunkAssembler] = {}
        skip = set(skip_tiles)
        if segmentation:
            self.assemblers["seg"] = self._seg_assembler(chunk, cores, windows, skip)
        if image_channels:
            self.assemblers["image"] = ChunkAssembler(
                shape=self.shape,
                chunk=chunk,
                boxes=cores,
                channels=image_channels,
                mode="place",
                finalize=finalize_split([("image", image_channels)]),
                dtype="uint8",
                skip_tiles=skip,
            )
        if feature_dim:
            self.assemblers["features"] = self._feature_assembler(chunk, feature_dim, cores, windows, skip)

    def _seg_assembler(self, chunk: int, cores: dict, windows: dict, skip: set) -> ChunkAssembler:
        """Class map (and probabilities plus extra maps): uint8 cores placed (crop) or fixed point blended."""
        channels = self.n_classes + len(self.extra_maps)
        if self.mode == "crop":
            parts = [("classes", 1)] + ([("probabilities", channels)] if self.probabilities else [])
            return ChunkAssembler(
                shape=self.shape,
                chunk=chunk,
                boxes=cores,
                channels=sum(n for _, n in parts),
                mode="place",
                finalize=finalize_split(parts),
                dtype="uint8",
                skip_tiles=skip,
            )
        return ChunkAssembler(
            shape=self.shape,
            chunk=chunk,
            boxes=windows,
            channels=channels,
            mode="accumulate",
            finalize=_finalize_segmentation(self.n_classes, self.probabilities),
            dtype="int32",
            ops=self.ops,
            weight=self._on_ops(window_2d(self.geom.tile, self.mode, halo=self.halo)),
            skip_tiles=skip,
        )

    def _feature_assembler(self, chunk: int, dim: int, cores: dict, windows: dict, skip: set) -> ChunkAssembler:
        """The token grid, ``feature_stride`` times coarser than the output: float16 cores or blended float32."""
        s = self.feature_stride
        fshape = (-(-self.shape[0] // s), -(-self.shape[1] // s))
        if self.mode == "crop":
            return ChunkAssembler(
                shape=fshape,
                chunk=chunk // s,
                boxes={i: _scaled(b, s) for i, b in cores.items()},
                channels=dim,
                mode="place",
                finalize=finalize_split([("features", dim)]),
                dtype="float16",
                skip_tiles=skip,
            )
        return ChunkAssembler(
            shape=fshape,
            chunk=chunk // s,
            boxes={i: _scaled(b, s) for i, b in windows.items()},
            channels=dim,
            mode="accumulate",
            finalize=finalize_mean("features"),
            dtype="float32",
            ops=self.ops,
            weight=self._on_ops(window_2d(self.geom.tile // s, self.mode, halo=self.halo // s)),
            skip_tiles=skip,
        )

    def _on_ops(self, a: np.ndarray):
        return torch.from_numpy(a).to(self.device) if self.ops is not NUMPY else a

    @property
    def needed_tiles(self) -> set[int]:
        out: set[int] = set()
        for a in self.assemblers.values():
            out |= a.needed_tiles
        return out

    @property
    def open_chunks(self) -> int:
        return sum(a.open_chunks for a in self.assemblers.values())

    def final_rows(self) -> int:
        """Output rows above this one have every chunk of the class map and probabilities handed out (in blend
        mode a band's last rows wait for the halo of the band below)."""
        seg = self.assemblers.get("seg")
        return seg.first_open_row if seg is not None else self.shape[0]

    def final_rows_by_array(self) -> dict[str, int]:
        """``final_rows`` per output array, in the rows of its own level 0 (the token grid for features)."""
        return {name: asm.first_open_row for group, asm in self.assemblers.items() for name in GROUP_ARRAYS[group]}

    # feeding ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _zero_damaged(values: torch.Tensor, damaged: list, offset: int, stride: int, channels_last: bool) -> None:
        """Zero the damaged pixels of each damaged tile: ``damaged`` holds (batch row, boxes in window px or None
        for the whole window); ``values`` start ``offset`` px into the window, one value per ``stride`` px."""
        for i, boxes in damaged:
            if not boxes:
                values[i] = 0
                continue
            h, w = (values.shape[1], values.shape[2]) if channels_last else (values.shape[-2], values.shape[-1])
            for b in boxes:
                y0, x0 = max(0, (b.y - offset) // stride), max(0, (b.x - offset) // stride)
                y1, x1 = min(h, -(-(b.y1 - offset) // stride)), min(w, -(-(b.x1 - offset) // stride))
                if y1 > y0 and x1 > x0:
                    if channels_last:
                        values[i, y0:y1, x0:x1] = 0
                    else:
                        values[i, ..., y0:y1, x0:x1] = 0

    def _seg_values(self, outputs: dict, damaged: list):
        """Per-tile values of the seg group for the whole batch: uint8 cores (crop) or fixed point (blend)."""
        crop = self.mode == "crop"
        h, c = self.halo, self.core

        def cut(t: torch.Tensor) -> torch.Tensor:  # crop mode only needs the cores: less softmax work
            return t[..., h : h + c, h : h + c] if crop else t

        extras = []
        for name in self.extra_maps:
            m = outputs[name].float()
            m = m[:, None] if m.ndim == 3 else m
            extras.append(cut(torch.sigmoid(m) if name in self.sigmoid_maps else m.clamp(0, 1)))
        p = fixed_point_probabilities(cut(outputs["logits"]), extras)  # (B, C, H, W) whole numbers
        if damaged:  # only the damaged tiles' pixels (the whole window when the loader could not tell)
            self._zero_damaged(p, damaged, h if crop else 0, 1, channels_last=False)
        if crop:
            return host_async(placed_segmentation(p, self.probabilities, self.n_classes))
        p = fixed_point_int(p)
        return p if self.ops is not NUMPY else host(p)

    def add_batch(self, batch: TileBatch, outputs: dict) -> list[tuple[str, Box, np.ndarray]]:
        """Feed one batch; returns finished blocks as (output name, box in output pixels, array)."""
        values = self.batch_values(batch, outputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.place(batch, values)

    def batch_values(self, batch: TileBatch, outputs: dict) -> dict:
        """The device half of ``add_batch``: per group, the batch's values as ``place`` takes them (uint8 cores on
        the host in crop mode). Reads no assembler state. Host arrays of a CUDA run are filled asynchronously
        (``host_async``): wait for an event recorded after this call before placing them (``add_batch`` does)."""
        boxes = getattr(batch, "damaged_boxes", {})
        damaged = [(i, boxes.get(t)) for i, t in enumerate(batch.tiles) if t in batch.damaged]
        values = {}
        if "seg" in self.assemblers:
            values["seg"] = self._seg_values(outputs, damaged)
        if "image" in self.assemblers:
            values["image"] = host_async(batch.pixels)  # on the device when the GPU decoded it
        if "features" in self.assemblers:
            f = channels_last(outputs["features"].float())
            if damaged:
                self._zero_damaged(f, damaged, 0, self.feature_stride, channels_last=True)
            values["features"] = (
                host_async(f.half()) if self.mode == "crop" else (f if self.ops is not NUMPY else host_async(f))
            )
        return values

    def place(self, batch: TileBatch, values: dict) -> list[tuple[str, Box, np.ndarray]]:
        """The host half of ``add_batch``: place each tile's values; returns the blocks finished by them."""
        blocks = []
        for i, t in enumerate(batch.tiles):
            ox, oy = self.origins[t]
            for group, data in values.items():
                asm = self.assemblers[group]
                s = self.feature_stride if group == "features" else 1
                shift = self.halo if group == "seg" and self.mode == "crop" else 0
                for box, named in asm.add(t, data[i], ((ox + shift) // s, (oy + shift) // s)):
                    out_box = Box(box.x * s, box.y * s, box.w * s, box.h * s) if s > 1 else box
                    for name, arr in named.items():
                        blocks.append((name, out_box, arr))
        return blocks
