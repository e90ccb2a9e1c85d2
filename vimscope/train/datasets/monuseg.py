"""MoNuSeg 2018 training images: official Aperio XML polygons where present, per-nucleus PNG masks otherwise.

The per-nucleus masks (rasterised by a challenge team) sit about one pixel up and left of a plain polygon fill;
filling the XML with ``polygon(Y - 1, X - 1)`` reproduces them (median per-nucleus IoU 0.98-1.0), so all 30
label maps follow that one convention (shift 1.0 in :func:`vimscope.train.rasterize.ring_mask`).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import LabelledImage, LoadContext, resolve
from vimscope.train.datasets.readers import read_array, read_rgb_or_bands
from vimscope.train.rasterize import ring_mask

MONUSEG_MPP = 0.2527  # <Annotations MicronsPerPixel="0.252700">
XML_SHIFT = 1.0

# TCGA tissue-source-site code (second field of the name) -> organ, from the MoNuSeg 2018 training set table.
ORGANS = {
    "A7": "breast", "AR": "breast", "E2": "breast",
    "B0": "kidney", "HE": "kidney",
    "18": "liver", "21": "liver", "38": "liver", "49": "liver", "50": "liver",
    "CH": "prostate", "G9": "prostate",
    "DK": "bladder", "G2": "bladder",
    "AY": "colon", "NH": "colon",
    "KB": "stomach", "RD": "stomach",
}  # fmt: skip


@dataclass
class MoNuSegSource:
    """``kind: monuseg``: a folder with ``images/``, ``annotations/`` (XML) and ``masks-per-nucleus/``."""

    path: str
    include: list[str] = field(default_factory=list)  # only these image names (all when empty)
    mpp: float = MONUSEG_MPP


def organ_of(name: str) -> str:
    parts = name.split("-")
    return ORGANS.get(parts[1], "unknown") if len(parts) > 1 else "unknown"


def read_xml_polygons(path: str | Path) -> list[np.ndarray]:
    """One (n, 2) array of (x, y) vertices per ``<Region>`` (one nucleus each)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ConfigError(f"{path}: not a valid annotation XML ({e})") from None
    return [
        np.array([(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")], dtype=np.float64)
        for region in root.iter("Region")
    ]


def xml_instances(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Instance map from an XML file: region k (1-based, file order) fills ``polygon(Y - 1, X - 1)``."""
    inst = np.zeros(shape, np.int32)
    for k, xy in enumerate(read_xml_polygons(path), 1):
        rr, cc = ring_mask(xy, shape, shift=XML_SHIFT)
        inst[rr, cc] = k
    return inst


def mask_instances(folder: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Instance map from one-nucleus-per-file PNG masks, ids in sorted file order (decoded on threads)."""
    files = sorted(Path(folder).glob("*.png"))

    def pixels(f: Path) -> np.ndarray:
        m = read_array(f)
        if m.shape[:2] != shape:
            raise ConfigError(f"{f}: mask {m.shape[:2]} does not match image {shape}")
        return np.flatnonzero((m[..., 0] if m.ndim == 3 else m) > 0)

    inst = np.zeros(shape, np.int32)
    flat = inst.reshape(-1)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for k, idx in enumerate(pool.map(pixels, files), 1):
            flat[idx] = k
    return inst


def load_monuseg(cfg: MoNuSegSource, ctx: LoadContext) -> list[LabelledImage]:
    root = resolve(cfg.path, ctx)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise ConfigError(f"{root}: not a MoNuSeg folder (no images/)")
    out = []
    for img_path in sorted(images_dir.glob("*.tif")):
        name = img_path.stem
        if cfg.include and name not in cfg.include:
            continue
        image = read_rgb_or_bands(img_path)
        shape = image.shape[:2]
        xml, masks = root / "annotations" / f"{name}.xml", root / "masks-per-nucleus" / name
        if xml.is_file():
            inst = xml_instances(xml, shape)
        elif masks.is_dir():
            inst = mask_instances(masks, shape)
        else:
            raise ConfigError(f"{name}: neither annotations/{name}.xml nor masks-per-nucleus/{name}/")
        out.append(
            LabelledImage(
                name, image, instances=inst, mpp=cfg.mpp, group=organ_of(name), class_names=["background", "nucleus"]
            )
        )
    missing = sorted(set(cfg.include) - {im.name for im in out})
    if missing:
        raise ConfigError(f"MoNuSeg image not found: {missing[0]}")
    return out
