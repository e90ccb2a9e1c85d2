"""In-memory tiled prediction of one image with a model being trained: the validation path of the training loop.

Tiles of ``tile`` pixels overlap by ``halo`` on each side and only their cores are kept (the pipeline's default
``crop`` stitching), with reflect padding at the image border. ``vimscope eval`` uses the pipeline itself; this
copy avoids writing files every epoch.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from vimscope.config import ModelSpec
from vimscope.train.sampler import value_scale

__all__ = ["activate", "maps_to_labels", "predict_maps", "predict_maps_for"]


def activate(name: str, raw: torch.Tensor) -> torch.Tensor:
    """A raw extra map to 0-1 as the pipeline does (``vimscope.instances.MAP_ACTIVATIONS``): boundary
    logits through a sigmoid, the distance regression clamped."""
    from vimscope.instances import activation

    return raw.clamp(0, 1) if activation(name) == "clamp" else torch.sigmoid(raw)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    tile: int,
    halo: int,
    mean: list[float],
    std: list[float],
    scale: float,
    size_multiple: int = 1,
    batch_size: int = 4,
    amp: bool = False,
) -> dict[str, np.ndarray]:
    """Probability maps of a (h, w, c) image: ``probabilities`` (K, h, w) softmax, and a (h, w) 0-1 map per
    extra output (``boundary``, ``distance``; see :func:`activate`)."""
    device = next(model.parameters()).device
    h, w = image.shape[:2]
    tile = max(size_multiple, tile - tile % size_multiple)
    core = tile - 2 * halo
    if core <= 0:
        raise ValueError(f"tile {tile} leaves no core with halo {halo}")
    rows, cols = -(-h // core), -(-w // core)
    ph, pw = rows * core + 2 * halo - h, cols * core + 2 * halo - w
    pixels = np.moveaxis(image, -1, 0).astype(np.float32) / scale
    mode = "reflect" if halo < min(h, w) and ph - halo < h and pw - halo < w else "edge"
    padded = np.pad(pixels, ((0, 0), (halo, ph - halo), (halo, pw - halo)), mode=mode)
    x_all = torch.from_numpy(padded).to(device)
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)
    x_all = (x_all - m) / s
    boxes = [(r * core, c * core) for r in range(rows) for c in range(cols)]
    out: dict[str, np.ndarray] = {}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(boxes), batch_size):
            chunk = boxes[i : i + batch_size]
            batch = torch.stack([x_all[:, y : y + tile, x : x + tile] for y, x in chunk])
            with _autocast(device, amp):
                result = model(batch)
            maps = {"probabilities": result["logits"].float().softmax(1)}
            for name, value in result.items():
                if name not in ("logits", "features"):
                    maps[name] = activate(name, value.float()[:, :1])
            for name, value in maps.items():
                core_maps = value[:, :, halo : halo + core, halo : halo + core].cpu().numpy()
                if name not in out:
                    out[name] = np.zeros((value.shape[1], rows * core, cols * core), np.float32)
                for (y, x), block in zip(chunk, core_maps):
                    out[name][:, y : y + core, x : x + core] = block
    finally:
        model.train(was_training)
    return {k: (v[:, :h, :w] if k == "probabilities" else v[0, :h, :w]) for k, v in out.items()}


def predict_maps_for(
    model: torch.nn.Module, image: np.ndarray, spec: ModelSpec, *, batch_size: int = 4, amp: bool = False
) -> dict[str, np.ndarray]:
    """:func:`predict_maps` with the tiles, normalisation and token stride of ``spec``, pixel values
    scaled as the pipeline's loader does (``sampler.value_scale``)."""
    return predict_maps(
        model,
        image,
        tile=spec.tile,
        halo=spec.halo,
        mean=spec.mean,
        std=spec.std,
        scale=value_scale(image.dtype),
        size_multiple=spec.size_multiple,
        batch_size=batch_size,
        amp=amp,
    )


def maps_to_labels(
    maps: dict[str, np.ndarray], postprocess: dict | None, instances: bool, *, mpp: float | None = None
) -> dict[str, np.ndarray]:
    """Class map (argmax) and, for instance models, instance ids from the nucleus (= 1 - background) map. ``mpp``:
    µm per pixel of the maps, so that the model's limits in µm² apply as in ``vimscope segment``."""
    probs = maps["probabilities"]
    out = {"classes": probs.argmax(0).astype(np.uint8)}
    if instances:
        from vimscope.instances import label_instances

        inputs = {"nucleus": 1.0 - probs[0]}
        for name in ("boundary", "distance"):
            if name in maps:
                inputs[name] = maps[name]
        params = {k: v for k, v in (postprocess or {}).items() if k != "type"}
        out["instances"] = label_instances(inputs, params, mpp=mpp).astype(np.int32)
    return out
