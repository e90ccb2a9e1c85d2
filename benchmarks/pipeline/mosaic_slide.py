"""A realistic benchmark slide from real H&E pixels: labelled nucleus images of ../shared/data mosaicked into a
JPEG-tiled pyramidal BigTIFF at 0.25 µm/px, about half tissue, glass elsewhere.

    python -m benchmarks.pipeline.mosaic_slide --out slide.tif                    # 80,000 x 60,000 px
    python -m benchmarks.pipeline.mosaic_slide --out small.tif --size 8192x6144 --json meta.json
    python -m benchmarks.pipeline.mosaic_slide --pack --out .carry/cells.zip     # the crops, to carry
    python -m benchmarks.pipeline.mosaic_slide --data .carry/cells.zip --out slide.tif

Why not the drawn textures of ``vimscope.synthetic``: their nuclei are 3-7 px blobs at a fixed density, so the
model, the instance labelling and the outline tracing see nothing like a slide. Here every tissue cell (one
512 px tile at level 0) is a 512 x 512 crop of a real 40x H&E image with hand-labelled nuclei (GBM40: 40 tiles
of glioblastoma at about 0.25 µm/px; MoNuSeg 2018 training: 30 tiles of 7 organs at 0.2527 µm/px, four corner
crops each; CryoNuSeg: 2 frozen-section tiles), under one of the 8 flips and quarter turns, picked by a seeded
generator: 1,296 distinct cells. Tissue is the union of a few seeded ellipses covering about ``--tissue`` of the
slide (cells inside, glass outside). The labels give the expected nucleus count (the JSON's ``nuclei_expected``:
GBM40 crops counted exactly, MoNuSeg and CryoNuSeg crops by their image's density).

Level 0 writes each distinct cell's JPEG once and repeats the bytes, so 80,000 x 60,000 px take about a minute;
lower levels are area-averaged from the cells and encoded tile by tile. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CELL = 512
MPP = 0.25
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "labelled"


@dataclass
class Cells:
    """The real H&E crops (CELL x CELL x 3 uint8) and the nuclei each is expected to hold."""

    images: list[np.ndarray] = field(default_factory=list)
    nuclei: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add(self, image: np.ndarray, nuclei: float, source: str) -> None:
        self.images.append(np.ascontiguousarray(image[:CELL, :CELL, :3]))
        self.nuclei.append(float(nuclei))
        self.sources.append(source)


def _gbm40(cells: Cells, root: Path) -> None:
    from PIL import Image

    for image_path in sorted((root / "nuclei-gbm40").glob("[0-9][0-9].png")):
        labels = np.asarray(Image.open(image_path.with_name(image_path.stem + "_labels.png")))
        count = len(np.unique(labels[:CELL, :CELL])) - 1
        cells.add(np.asarray(Image.open(image_path).convert("RGB")), count, f"gbm40/{image_path.name}")


def _monuseg_count(root: Path, name: str) -> int:
    """Nuclei of one MoNuSeg image: its per-nucleus mask files, or the regions of its XML annotation."""
    masks = root / "monuseg-train" / "masks-per-nucleus" / name
    if masks.is_dir():
        return sum(1 for _ in masks.glob("*.png"))
    xml = (root / "monuseg-train" / "annotations" / f"{name}.xml").read_bytes()
    return xml.count(b"<Region ")


def _monuseg(cells: Cells, root: Path) -> None:
    import tifffile

    for image_path in sorted((root / "monuseg-train" / "images").glob("*.tif")):
        image = tifffile.imread(image_path)
        density = _monuseg_count(root, image_path.stem) / (image.shape[0] * image.shape[1])
        h, w = image.shape[:2]
        for y, x in ((0, 0), (0, w - CELL), (h - CELL, 0), (h - CELL, w - CELL)):
            cells.add(image[y : y + CELL, x : x + CELL], density * CELL * CELL, f"monuseg/{image_path.name}")


def _cryonuseg(cells: Cells, root: Path) -> None:
    import tifffile

    for archive in sorted((root / "nuclei-cryonuseg").glob("*.zip")):
        with zipfile.ZipFile(archive) as z:  # the tile, RoiSet.zip (one .roi per nucleus), Centroid.txt
            image = tifffile.imread(io.BytesIO(z.read(next(n for n in z.namelist() if n.endswith(".tif")))))
            rois = len(zipfile.ZipFile(io.BytesIO(z.read("RoiSet.zip"))).namelist())
        cells.add(image, rois * CELL * CELL / (image.shape[0] * image.shape[1]), f"cryonuseg/{archive.name}")


def save_pack(cells: Cells, path: Path, quality: int = 90) -> Path:
    """The crops as one zip of JPEGs (quality 90, as the slide stores them) plus their sources and nucleus
    counts: about 15 MB for all 162, small enough to carry to a GPU machine that has no ../shared."""
    from PIL import Image

    with zipfile.ZipFile(path, "w") as z:
        for k, image in enumerate(cells.images):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG", quality=quality)
            z.writestr(f"{k:04d}.jpg", buf.getvalue())
        z.writestr("cells.json", json.dumps({"nuclei": cells.nuclei, "sources": cells.sources}))
    return path


def _load_pack(path: Path) -> Cells:
    from PIL import Image

    cells = Cells()
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("cells.json"))
        for k, (nuclei, source) in enumerate(zip(meta["nuclei"], meta["sources"])):
            cells.add(np.asarray(Image.open(io.BytesIO(z.read(f"{k:04d}.jpg"))).convert("RGB")), nuclei, source)
    return cells


def load_cells(root: Path = DATA) -> Cells:
    """Every source crop (before flips and turns), from the labelled sets or a pack (``save_pack``); raises
    FileNotFoundError if neither is there."""
    if root.suffix == ".zip" and root.is_file():
        return _load_pack(root)
    if not (root / "nuclei-gbm40").is_dir():
        raise FileNotFoundError(f"labelled data not found under {root}")
    cells = Cells()
    for add in (_gbm40, _monuseg, _cryonuseg):
        add(cells, root)
    return cells


def dihedral(image: np.ndarray, op: int) -> np.ndarray:
    """One of the 8 flips and quarter turns of a square image (op 0 is the image itself)."""
    out = np.rot90(image, op % 4)
    return np.ascontiguousarray(out[:, ::-1] if op >= 4 else out)


def tissue_layout(rows: int, cols: int, fraction: float, seed: int) -> np.ndarray:
    """(rows, cols) bool: which cells are tissue, the union of 3-5 seeded ellipses grown until about ``fraction``
    of the cells are covered (tissue pieces of a section, not one disc)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 6))
    centres = rng.uniform(0.2, 0.8, (n, 2)) * (rows, cols)
    axes = rng.uniform(0.6, 1.4, (n, 2)) * (rows, cols) / math.sqrt(n)
    angles = rng.uniform(0, math.pi, n)
    yy, xx = np.mgrid[0:rows, 0:cols] + 0.5
    dist = np.full((rows, cols), np.inf)
    for (cy, cx), (ay, ax), t in zip(centres, axes, angles):
        u = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
        v = -(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)
        dist = np.minimum(dist, np.hypot(u / ax, v / ay))
    return dist <= np.quantile(dist, fraction)


def _halve(image: np.ndarray) -> np.ndarray:
    """2 x 2 area average of a (h, w, 3) image, as the pipeline's pyramids take it (``writers.pyramid``)."""
    from vimscope.writers.pyramid import downsample_mean

    return np.moveaxis(downsample_mean(np.moveaxis(image, -1, 0)), 0, -1)


class Mosaic:
    """Which variant (source crop x 8 flips/turns) each tissue cell shows, and the JPEG tiles of every level."""

    def __init__(self, cells: Cells, height: int, width: int, tissue: float, seed: int):
        from vimscope.synthetic import GLASS, encode_jpeg_tile

        self.cells, self.height, self.width = cells, height, width
        self.rows, self.cols = math.ceil(height / CELL), math.ceil(width / CELL)
        self.tissue = tissue_layout(self.rows, self.cols, tissue, seed)
        rng = np.random.default_rng(seed + 1)
        self.variant = rng.integers(len(cells.images) * 8, size=(self.rows, self.cols))
        self.glass = np.array(GLASS, np.uint8)
        self._glass_tile = encode_jpeg_tile(np.broadcast_to(self.glass, (CELL, CELL, 3)).copy())
        self._level0: dict[int, bytes] = {}
        self._small: dict[tuple[int, int], np.ndarray] = {}  # (source, level) -> area-averaged source crop

    def cell_pixels(self, variant: int, level: int) -> np.ndarray:
        """The cell of ``variant`` at ``level`` (CELL / 2**level px square): flips and turns commute with 2 x 2
        averaging of a square, so each source is averaged once per level."""
        source, op = divmod(int(variant), 8)
        key = (source, level)
        if key not in self._small:
            self._small[key] = (
                self.cells.images[source] if level == 0 else _halve(self.cell_pixels(source * 8, level - 1))
            )
        return dihedral(self._small[key], op)

    def tiles(self, level: int, shape: tuple[int, int]):
        """Row-major JPEG tiles of one level (CELL px each; at level k one tile spans 2**k x 2**k cells)."""
        from vimscope.synthetic import encode_jpeg_tile

        span, size = 2**level, max(1, CELL >> level)
        for ty in range(math.ceil(shape[0] / CELL)):
            for tx in range(math.ceil(shape[1] / CELL)):
                rows = slice(ty * span, min((ty + 1) * span, self.rows))
                cols = slice(tx * span, min((tx + 1) * span, self.cols))
                if not self.tissue[rows, cols].any():
                    yield self._glass_tile
                elif level == 0:
                    v = int(self.variant[ty, tx])
                    if v not in self._level0:
                        self._level0[v] = encode_jpeg_tile(self.cell_pixels(v, 0))
                    yield self._level0[v]
                else:
                    yield encode_jpeg_tile(self._canvas(rows, cols, level, size))

    def _canvas(self, rows: slice, cols: slice, level: int, size: int) -> np.ndarray:
        canvas = np.empty((CELL, CELL, 3), np.uint8)
        canvas[:] = self.glass
        for r in range(rows.start, rows.stop):
            for c in range(cols.start, cols.stop):
                if self.tissue[r, c]:
                    y, x = (r - rows.start) * size, (c - cols.start) * size
                    canvas[y : y + size, x : x + size] = self.cell_pixels(self.variant[r, c], level)
        return canvas

    def summary(self) -> dict:
        placed = self.variant[self.tissue] // 8
        return {
            "tissue_cells": int(self.tissue.sum()),
            "tissue_fraction": round(float(self.tissue.mean()), 4),
            "distinct_cells": int(len(np.unique(self.variant[self.tissue]))),
            "nuclei_expected": int(round(sum(self.cells.nuclei[s] for s in placed))),
            "sources": len(self.cells.images),
        }


def write_mosaic(path: Path, height: int, width: int, *, tissue: float = 0.5, seed: int = 0, root: Path = DATA) -> dict:
    """Write the slide (atomically) and return what it holds (size, pixel size, tissue, expected nuclei, time)."""
    from vimscope.synthetic import pyramid_shapes, write_jpeg_levels

    t0 = time.perf_counter()
    mosaic = Mosaic(load_cells(root), height, width, tissue, seed)
    shapes = pyramid_shapes(height, width, CELL)
    write_jpeg_levels(path, shapes, mosaic.tiles, tile=CELL, mpp=MPP)
    meta = {"path": str(path), "width": width, "height": height, "mpp": MPP, "tile": CELL, "levels": len(shapes)}
    seconds = round(time.perf_counter() - t0, 2)
    return meta | {"seed": seed, "bytes": path.stat().st_size, "seconds": seconds} | mosaic.summary()


def mosaic_in(folder: Path, width: int, height: int, root: Path = DATA) -> Path:
    """The slide of that size (default tissue and seed) in ``folder``, written there the first time only."""
    path = folder / f"mosaic-{width}x{height}.tif"
    if not path.exists():
        print(f"mosaic slide written: {json.dumps(write_mosaic(path, height, width, root=root))}", flush=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="80000x60000", help="WIDTHxHEIGHT in px at 0.25 µm/px")
    ap.add_argument("--tissue", type=float, default=0.5, help="fraction of the slide's cells that are tissue")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA, help="the labelled sets (../shared/data/labelled) or a pack")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--pack", action="store_true", help="write the crops to --out as a pack (zip) instead")
    args = ap.parse_args(argv)
    if args.pack:
        print(save_pack(load_cells(args.data), args.out))
        return 0
    width, height = (int(v) for v in args.size.lower().split("x"))
    meta = write_mosaic(args.out, height, width, tissue=args.tissue, seed=args.seed, root=args.data)
    print(json.dumps(meta))
    if args.json:
        args.json.write_text(json.dumps(meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
