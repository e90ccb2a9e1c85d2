"""Training packs: a labelled set in one compact file that travels where ``../shared`` does not (the GPU machine).

A pack is an uncompressed zip (members are already compressed) of re-encoded arrays and a
``manifest.json`` listing every image (name, group, mpp, class names) with each member's codec, dtype, shape and
sha256; reading verifies every hash. With ``quality`` the 8-bit RGB images are lossy WebP at that quality
(labels stay lossless), for a pack that must fit a small transfer; the manifest records it and each image's PSNR.
Codecs: JPEG XL lossless for 8-bit images (the smallest here: the 30 MoNuSeg tiles take about 36 MB against 41 MB
as lossless WebP and 54 MB as PNG), uint16 PNG for instance maps, 8-bit PNG for class maps, and zstd-compressed
raw arrays for everything else (multi-band rasters, more than 65535 objects).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vimscope.errors import ConfigError
from vimscope.train.datasets.base import LabelledImage, LoadContext, resolve

__all__ = [
    "PACK_FORMAT",
    "PackSource",
    "build_pack",
    "choose_codec",
    "decode",
    "encode",
    "load_pack",
    "pack_images",
    "pack_summary",
    "read_manifest",
    "read_pack",
]

PACK_FORMAT = "vimscope-pack/1"
CODECS = ("jpegxl", "webp", "png", "zstd")


def _codec_available(name: str) -> bool:
    import imagecodecs

    return {
        "jpegxl": getattr(imagecodecs, "JPEGXL", None),
        "webp": getattr(imagecodecs, "WEBP", None),
        "png": getattr(imagecodecs, "PNG", None),
        "zstd": getattr(imagecodecs, "ZSTD", None),
    }[name] is not None and getattr(imagecodecs, name.upper()).available


def choose_codec(array: np.ndarray, preferred: str = "auto") -> str:
    """The lossless codec for an array: ``preferred`` when it can hold it, else the best that can."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    fits = {
        "jpegxl": array.dtype == np.uint8 and channels in (1, 3, 4),
        "webp": array.dtype == np.uint8 and channels in (3, 4),
        "png": array.dtype in (np.uint8, np.uint16) and channels in (1, 3, 4),
        "zstd": True,
    }
    order = [preferred] if preferred != "auto" else []
    order += ["jpegxl", "png", "zstd"]
    for name in order:
        if name not in fits:
            raise ConfigError(f"unknown codec {name!r} (known: auto, {', '.join(CODECS)})")
        if fits[name] and _codec_available(name):
            return name
    return "zstd"


def encode(array: np.ndarray, codec: str) -> bytes:
    import imagecodecs

    a = np.ascontiguousarray(array)
    if a.ndim == 3 and a.shape[2] == 1 and codec != "zstd":
        a = a[:, :, 0]
    if codec == "jpegxl":
        return imagecodecs.jpegxl_encode(a, lossless=True, effort=7)
    if codec == "webp":
        return imagecodecs.webp_encode(a, lossless=True)
    if codec == "png":
        return imagecodecs.png_encode(a, level=9)
    if codec == "zstd":
        return imagecodecs.zstd_encode(a.tobytes(), level=19)
    raise ConfigError(f"unknown codec {codec!r}")


def decode(data: bytes, codec: str, dtype: str, shape: list[int]) -> np.ndarray:
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r} in pack")
    try:
        import imagecodecs
    except ImportError:  # a GPU machine without imagecodecs: Pillow reads WebP and PNG packs (uint16 PNG too)
        if codec not in ("webp", "png"):
            raise ConfigError(f"this pack uses {codec}, which needs imagecodecs; build it with --codec webp") from None
        from PIL import Image

        a = np.asarray(Image.open(io.BytesIO(data)))
        return a.astype(dtype, copy=False).reshape(shape)
    if codec == "zstd":
        a = np.frombuffer(imagecodecs.zstd_decode(data), dtype=dtype).reshape(shape)
    else:
        a = getattr(imagecodecs, f"{codec}_decode")(data)
    a = np.asarray(a).astype(dtype, copy=False).reshape(shape)
    return a


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(zf: zipfile.ZipFile, name: str, array: np.ndarray, codec: str, quality: int | None = None) -> dict:
    lossy = quality is not None and codec == "webp"
    data = encode_lossy_webp(array, quality) if lossy else encode(array, codec)
    back = decode(data, codec, str(array.dtype), list(array.shape))
    entry = {"file": name, "codec": codec, "dtype": str(array.dtype), "shape": list(array.shape)}
    if lossy:
        mse = float(np.mean((back.astype(np.float64) - array) ** 2))
        entry.update(quality=quality, psnr=round(10 * np.log10(255.0**2 / max(mse, 1e-12)), 2))
    elif not np.array_equal(back, array):  # a lossless member must come back exactly
        raise RuntimeError(f"codec {codec} did not round-trip {name} exactly")
    zf.writestr(name, data)
    return {**entry, "sha256": _sha256(data)}


def encode_lossy_webp(array: np.ndarray, quality: int) -> bytes:
    import imagecodecs

    if not 1 <= quality <= 100:
        raise ConfigError(f"quality must be 1..100, not {quality}")
    return imagecodecs.webp_encode(np.ascontiguousarray(array), level=quality, lossless=False)


def build_pack(
    images: list[LabelledImage],
    path: str | Path,
    *,
    codec: str = "auto",
    sources: list[dict] | None = None,
    quality: int | None = None,
) -> dict:
    """Write ``images`` into a pack at ``path`` (atomically); returns the manifest, with ``sha256`` and ``bytes``
    of the whole file added (not stored inside it). ``quality``: 8-bit RGB images as lossy WebP."""
    path = Path(path)
    if not images:
        raise ConfigError("nothing to pack")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    items = []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for im in images:
            safe = im.name.replace("/", "_")
            item = {
                "name": im.name,
                "group": im.group,
                "mpp": im.mpp,
                "source": im.source,
                "class_names": list(im.class_names),
                "image": _image_member(zf, safe, im.image, codec, quality),
                "instances": None,
                "classes": None,
            }
            if im.instances is not None:
                inst = im.instances
                if inst.min(initial=0) >= 0 and inst.max(initial=0) < 65536:
                    inst = inst.astype(np.uint16)
                item["instances"] = _add(zf, f"instances/{safe}", inst, choose_codec(inst, "png"))
            derived = im.instances is not None and np.array_equal(im.classes, (im.instances > 0).astype(np.uint8))
            if not derived:
                item["classes"] = _add(zf, f"classes/{safe}", im.classes, choose_codec(im.classes, "png"))
            items.append(item)
        manifest = {
            "format": PACK_FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "images": len(items),
            "sources": sources or [],
            "lossy_quality": quality,
            "items": items,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    tmp.replace(path)
    data = path.read_bytes()
    return {**manifest, "sha256": _sha256(data), "bytes": len(data)}


def pack_images(doc: dict, base: Path | None) -> list[LabelledImage]:
    """The labelled images of a config's ``data:`` as a pack stores them: images finer than the config's model
    pixel size at it (training resamples them to it anyway), coarser ones as they are (the pack never grows)."""
    from vimscope.train.config import model_mpp
    from vimscope.train.datasets.base import load_sources
    from vimscope.train.sampler import downsample_to

    mpp = model_mpp(doc["model"]) if isinstance(doc.get("model"), dict) else None
    return [downsample_to(im, mpp) for im in load_sources(doc["data"], LoadContext(base=base, target_mpp=mpp))]


def _image_member(zf: zipfile.ZipFile, safe: str, image: np.ndarray, codec: str, quality: int | None) -> dict:
    rgb8 = image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if quality is not None and rgb8:
        return _add(zf, f"images/{safe}", image, "webp", quality)
    return _add(zf, f"images/{safe}", image, choose_codec(image, codec))


def _read_member(zf: zipfile.ZipFile, entry: dict, verify: bool, pack: Path) -> np.ndarray:
    try:
        data = zf.read(entry["file"])
    except KeyError:
        raise ConfigError(f"{pack}: member {entry['file']} is missing") from None
    if verify and _sha256(data) != entry["sha256"]:
        raise ConfigError(f"{pack}: {entry['file']} is damaged (sha256 mismatch)")
    return decode(data, entry["codec"], entry["dtype"], entry["shape"])


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except FileNotFoundError:
        raise ConfigError(f"pack not found: {path}") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise ConfigError(f"{path}: not a vimscope training pack") from None
    if manifest.get("format") != PACK_FORMAT:
        raise ConfigError(f"{path}: unsupported pack format {manifest.get('format')!r} (expected {PACK_FORMAT})")
    return manifest


def read_pack(path: str | Path, *, include: list[str] | None = None, verify: bool = True) -> list[LabelledImage]:
    """The pack's images (all, or those named in ``include``), every member checked against its sha256."""
    path = Path(path)
    manifest = read_manifest(path)
    out = []
    with zipfile.ZipFile(path) as zf:
        for item in manifest["items"]:
            if include and item["name"] not in include:
                continue
            image = _read_member(zf, item["image"], verify, path)
            inst = _read_member(zf, item["instances"], verify, path).astype(np.int32) if item["instances"] else None
            classes = _read_member(zf, item["classes"], verify, path) if item["classes"] else None
            out.append(
                LabelledImage(
                    item["name"],
                    image,
                    classes=classes,
                    instances=inst,
                    mpp=item["mpp"],
                    group=item["group"],
                    class_names=item["class_names"],
                    source=item.get("source") or "pack",
                )
            )
    missing = sorted(set(include or []) - {im.name for im in out})
    if missing:
        raise ConfigError(f"{path}: no image named {missing[0]!r} in the pack")
    return out


@dataclass
class PackSource:
    """``kind: pack``: a pack built by ``vimscope pack`` (``build_pack``)."""

    path: str
    include: list[str] = field(default_factory=list)
    verify: bool = True


def load_pack(cfg: PackSource, ctx: LoadContext) -> list[LabelledImage]:
    return read_pack(resolve(cfg.path, ctx), include=cfg.include or None, verify=cfg.verify)


def pack_summary(manifest: dict) -> str:
    """One line for the CLI: images, size, sha256."""
    return f"{manifest['images']} images, {manifest['bytes'] / 2**20:.1f} MiB, sha256 {manifest['sha256']}"
