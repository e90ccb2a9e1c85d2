"""Folders of image/mask pairs (PNG or TIFF): the simplest way to bring your own labels.

Masks pair with images by name: ``<masks>/<image stem><mask_suffix>.<any image suffix>``. A mask holds either
object ids (``mask_kind: instances``; a binary or colour-coded instance mask is relabelled by connected
component / colour) or class indices (``mask_kind: classes``, remapped through ``value_map``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage, LoadContext, resolve
from vimscope.train.datasets.readers import IMAGE_SUFFIXES, read_array, read_rgb_or_bands

MASK_KINDS = ("instances", "classes")


@dataclass
class FolderSource:
    """``kind: folder``."""

    path: str
    images: str = "images"  # sub-folder of ``path`` holding the images ("." for ``path`` itself)
    masks: str = "masks"  # sub-folder holding the masks
    mask_suffix: str = ""  # e.g. "_mask" for image01.png + image01_mask.png
    mask_kind: str = "classes"
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    value_map: dict = field(default_factory=dict)  # class masks: raw value -> class index
    ignore_values: list[int] = field(default_factory=list)  # class masks: raw values meaning unlabelled
    mpp: float | None = None
    group: str = ""
    include: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.mask_kind not in MASK_KINDS:
            raise ConfigError(f"data[folder].mask_kind must be one of {', '.join(MASK_KINDS)}, not {self.mask_kind!r}")


def instances_from_mask(mask: np.ndarray) -> np.ndarray:
    """Object ids from an instance mask: ids kept as they are; a binary mask split into connected components;
    a colour-coded (RGB) mask gets one id per colour."""
    from skimage.measure import label

    if mask.ndim == 3:
        rgb = mask[..., :3].astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        colours, inverse = np.unique(code, return_inverse=True)
        ids = inverse.reshape(code.shape).astype(np.int32)  # rank of the colour; black (0) ranks first
        return ids if colours[0] == 0 else ids + 1
    values = np.unique(mask)
    if len(values) <= 2:  # binary: 0 and one foreground value
        return label(mask > 0, connectivity=1).astype(np.int32)
    return mask.astype(np.int32)


def classes_from_mask(mask: np.ndarray, cfg: FolderSource, path) -> np.ndarray:
    raw = mask[..., 0] if mask.ndim == 3 else mask
    values = raw.astype(np.int64)
    ignore = np.isin(values, cfg.ignore_values)
    classes = values.copy()
    for src, dst in cfg.value_map.items():
        classes[values == int(src)] = int(dst)
    classes[ignore] = 0
    if classes.max(initial=0) >= len(cfg.classes):
        raise ConfigError(
            f"{path}: mask value {int(classes.max())} but only {len(cfg.classes)} classes (use value_map)"
        )
    out = classes.astype(np.uint8)
    out[ignore] = IGNORE_INDEX
    return out


def load_folder(cfg: FolderSource, ctx: LoadContext) -> list[LabelledImage]:
    root = resolve(cfg.path, ctx)
    image_dir, mask_dir = root / cfg.images, root / cfg.masks
    if not image_dir.is_dir():
        raise ConfigError(f"image folder not found: {image_dir}")
    masks = {p.name: p for p in mask_dir.iterdir()} if mask_dir.is_dir() else {}
    out = []
    for img_path in sorted(image_dir.iterdir()):
        if img_path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = img_path.stem
        if cfg.mask_suffix and stem.endswith(cfg.mask_suffix) and image_dir == mask_dir:
            continue  # the masks themselves, when images and masks share a folder
        if cfg.include and stem not in cfg.include:
            continue
        candidates = [masks.get(stem + cfg.mask_suffix + s) for s in IMAGE_SUFFIXES]
        candidates = [c for c in candidates if c is not None and c != img_path]
        if not candidates:
            raise ConfigError(f"no mask for {img_path.name} in {mask_dir} (expected {stem}{cfg.mask_suffix}.png)")
        mask = read_array(candidates[0])
        image = read_rgb_or_bands(img_path)
        if mask.shape[:2] != image.shape[:2]:
            raise ConfigError(f"{candidates[0]}: mask {mask.shape[:2]} does not match image {image.shape[:2]}")
        if cfg.mask_kind == "instances":
            inst = instances_from_mask(mask)
            classes = (inst > 0).astype(np.uint8)
        else:
            inst, classes = None, classes_from_mask(mask, cfg, candidates[0])
        out.append(
            LabelledImage(
                stem, image, classes=classes, instances=inst, mpp=cfg.mpp, group=cfg.group, class_names=cfg.classes
            )
        )
    return out
