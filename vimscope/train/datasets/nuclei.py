"""Two small nucleus-instance formats: MICCAI 2015 ASCII label masks and CryoNuSeg ImageJ ROI sets."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import LabelledImage, LoadContext, resolve
from vimscope.train.datasets.readers import read_rgb_or_bands
from vimscope.train.rasterize import ring_mask

NOMINAL_MPP = {20: 0.5, 40: 0.25}  # µm/px of a typical scanner at that objective power


@dataclass
class Miccai2015Source:
    """``kind: miccai2015``: ``imageNN.png`` with ``imageNN_mask.txt`` (the challenge's README gives magnifications)."""

    path: str
    include: list[str] = field(default_factory=list)
    mpp: float | None = None  # overrides the nominal pixel size from the README's magnification table


def read_ascii_mask(path: str | Path) -> np.ndarray:
    """``width height`` then one label per pixel, row-major with x fastest."""
    try:
        values = np.array(Path(path).read_text().split(), dtype=np.int64)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not an ASCII label mask ({e})") from None
    w, h = int(values[0]), int(values[1])
    if len(values) != 2 + w * h:
        raise ConfigError(f"{path}: header says {w}x{h} but holds {len(values) - 2} labels")
    return values[2:].reshape(h, w).astype(np.int32)


def _magnifications(root: Path) -> dict[str, int]:
    readme = root / "README_training.txt"
    if not readme.is_file():
        return {}
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(image\d+)\.png\s+(\d+)x", readme.read_text())}


def load_miccai2015(cfg: Miccai2015Source, ctx: LoadContext) -> list[LabelledImage]:
    root = resolve(cfg.path, ctx)
    mags = _magnifications(root)
    out = []
    for mask_path in sorted(root.glob("*_mask.txt")):
        name = mask_path.name[: -len("_mask.txt")]
        if cfg.include and name not in cfg.include:
            continue
        image = read_rgb_or_bands(root / f"{name}.png")
        mag = mags.get(name)
        mpp = cfg.mpp if cfg.mpp is not None else NOMINAL_MPP.get(mag)
        out.append(
            LabelledImage(
                name,
                image,
                instances=read_ascii_mask(mask_path),
                mpp=mpp,
                group=f"{mag}x" if mag else "",
                class_names=["background", "nucleus"],
            )
        )
    return out


@dataclass
class CryoNuSegSource:
    """``kind: cryonuseg``: zip files each holding one ImageJ TIFF and ``RoiSet.zip`` (one polygon per nucleus).

    ``path`` is one zip or a folder of them. ImageJ fills a polygon at pixel centres, which is the pixel-edge
    convention, so the ROIs rasterise with shift 0.5."""

    path: str
    include: list[str] = field(default_factory=list)
    mpp: float | None = None


def read_roiset(data: bytes) -> list[np.ndarray]:
    """(n, 2) float (x, y) vertices of every polygon ROI in an ImageJ ``RoiSet.zip`` (in file order)."""
    import roifile

    polygons = []
    with zipfile.ZipFile(io.BytesIO(data)) as inner:
        for entry in inner.namelist():
            if not entry.endswith(".roi"):
                continue
            roi = roifile.ImagejRoi.frombytes(inner.read(entry))
            xy = roi.coordinates()
            if xy is not None and len(xy) >= 3:
                polygons.append(np.asarray(xy, dtype=np.float64))
    return polygons


def _imagej_mpp(tif) -> float | None:
    meta = tif.imagej_metadata or {}
    unit = str(meta.get("unit", "")).encode().decode("unicode_escape")
    tag = tif.pages[0].tags.get("XResolution")
    if tag is None or unit not in ("µm", "um", "micron", "microns"):
        return None
    num, den = tag.value
    return den / num if num else None


def load_cryonuseg(cfg: CryoNuSegSource, ctx: LoadContext) -> list[LabelledImage]:
    import tifffile

    root = resolve(cfg.path, ctx)
    zips = [root] if root.is_file() else sorted(root.glob("*.zip"))
    if not zips:
        raise ConfigError(f"no CryoNuSeg zip files in {root}")
    out = []
    for zpath in zips:
        name = zpath.stem
        if cfg.include and name not in cfg.include:
            continue
        try:
            with zipfile.ZipFile(zpath) as z:
                tifs = [n for n in z.namelist() if n.lower().endswith((".tif", ".tiff"))]
                if not tifs or "RoiSet.zip" not in z.namelist():
                    raise ConfigError(f"{zpath}: expected one TIFF and RoiSet.zip inside")
                with tifffile.TiffFile(io.BytesIO(z.read(tifs[0]))) as tif:
                    image = tif.series[0].asarray()
                    mpp = cfg.mpp if cfg.mpp is not None else _imagej_mpp(tif)
                polygons = read_roiset(z.read("RoiSet.zip"))
        except zipfile.BadZipFile:
            raise ConfigError(f"{zpath}: not a zip file") from None
        inst = np.zeros(image.shape[:2], np.int32)
        for k, xy in enumerate(polygons, 1):
            rr, cc = ring_mask(xy, inst.shape, shift=0.5)
            inst[rr, cc] = k
        out.append(LabelledImage(name, image, instances=inst, mpp=mpp, class_names=["background", "nucleus"]))
    return out
