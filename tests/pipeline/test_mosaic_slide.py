"""The real-pixel benchmark slide (benchmarks/pipeline/mosaic_slide.py): a small one, opened as vimscope opens
slides, holds the shared labelled crops (through JPEG) at 0.25 µm/px, about the tissue fraction asked for, a
consistent pyramid, and the same bytes for the same seed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.conftest import shared_path

mosaic_slide = pytest.importorskip("benchmarks.pipeline.mosaic_slide")


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    root = shared_path("data/labelled")
    path = tmp_path_factory.mktemp("mosaic") / "mosaic.tif"
    meta = mosaic_slide.write_mosaic(path, 3072, 4096, tissue=0.5, seed=3, root=root)
    return path, meta, root


def test_summary_and_reader(slide):
    from vimscope.io.open import open_slide
    from vimscope.types import Box

    path, meta, _ = slide
    assert (meta["width"], meta["height"], meta["levels"]) == (4096, 3072, 3)
    assert abs(meta["tissue_fraction"] - 0.5) < 0.05 and meta["tissue_cells"] == round(meta["tissue_fraction"] * 48)
    assert meta["sources"] == 40 + 4 * 30 + 2  # GBM40, four crops of each MoNuSeg image, CryoNuSeg
    assert 80 * meta["tissue_cells"] < meta["nuclei_expected"] < 400 * meta["tissue_cells"]
    reader = open_slide(path)
    assert reader.meta.mpp == pytest.approx(0.25) and tuple(reader.meta.level_dimensions[0]) == (4096, 3072)
    assert reader.read(Box(512, 512, 1024, 768)).shape == (768, 1024, 3)
    assert not path.with_name(path.name + ".partial").exists()


def test_tiles_hold_the_source_crops(slide):
    """Every level-0 tissue tile is its source crop under its flip/turn (JPEG at quality 90: PSNR above 30 dB);
    glass tiles are glass; level 1 is the 2 x 2 average of level 0."""
    import tifffile

    path, _, root = slide
    mosaic = mosaic_slide.Mosaic(mosaic_slide.load_cells(root), 3072, 4096, 0.5, 3)
    with tifffile.TiffFile(path) as tif:
        level0, level1 = (lvl.asarray() for lvl in tif.series[0].levels[:2])
    for r in range(mosaic.rows):
        for c in range(mosaic.cols):
            got = level0[r * 512 : (r + 1) * 512, c * 512 : (c + 1) * 512].astype(float)
            want = mosaic.cell_pixels(mosaic.variant[r, c], 0) if mosaic.tissue[r, c] else mosaic.glass
            mse = np.mean((got - want) ** 2)
            assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30, (r, c)
    halved = mosaic_slide._halve(level0)
    assert np.abs(halved.astype(int) - level1.astype(int)).mean() < 4


def test_same_seed_same_bytes(slide, tmp_path):
    path, _, root = slide
    again = tmp_path / "again.tif"
    mosaic_slide.write_mosaic(again, 3072, 4096, tissue=0.5, seed=3, root=root)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_dihedral_covers_eight_distinct_views():
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    views = {mosaic_slide.dihedral(image, op).tobytes() for op in range(8)}
    assert len(views) == 8 and mosaic_slide.dihedral(image, 0).tobytes() == image.tobytes()


def test_pack_round_trip(slide, tmp_path):
    """The crops packed as JPEGs (to carry to a GPU machine) give the same layout, counts and nearly the pixels."""
    _, meta, root = slide
    cells = mosaic_slide.load_cells(root)
    pack = mosaic_slide.save_pack(cells, tmp_path / "cells.zip")
    again = mosaic_slide.load_cells(pack)
    assert again.sources == cells.sources and again.nuclei == pytest.approx(cells.nuclei)
    err = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(again.images, cells.images)])
    assert err < 4
    from_pack = mosaic_slide.write_mosaic(tmp_path / "p.tif", 3072, 4096, tissue=0.5, seed=3, root=pack)
    same = ("tissue_cells", "distinct_cells", "nuclei_expected", "sources", "levels")
    assert {k: from_pack[k] for k in same} == {k: meta[k] for k in same}
