"""Tissue masks: Otsu on saturation + morphology in µm² for slides, valid data for rasters; histolab comparison."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_path
from tests.io.conftest import demo_path
from vimscope.errors import MissingPixelSizeError
from vimscope.io import open_slide
from vimscope.tissue import TissueMask, clean, mask
from vimscope.types import Box


def _iou(ours: TissueMask, reference: np.ndarray) -> float:
    resized = np.asarray(Image.fromarray(ours.mask).resize(reference.shape[::-1], Image.Resampling.NEAREST))
    return float((resized & reference).sum() / (resized | reference).sum())


def test_demo_slide_mask_at_8_um():
    reader = open_slide(demo_path())
    m = mask(reader)
    w, h = reader.meta.dimensions
    assert m.method == "otsu-saturation" and m.mpp == pytest.approx(8.0)
    assert m.downsample == pytest.approx(8.0 / 0.499)
    assert m.shape == (int(np.ceil(h / m.downsample)), int(np.ceil(w / m.downsample)))
    assert 0.2 < m.fraction < 0.6  # a tissue section on glass
    assert not m.mask[:5, :5].any() and not m.mask[-5:, -5:].any()  # corners are glass
    # tissue is where the slide is coloured: mean saturation inside the mask is far higher than outside
    rgb = reader.thumbnail(max(m.shape)).astype(np.float32)
    rgb = np.asarray(Image.fromarray(rgb.astype(np.uint8)).resize(m.shape[::-1])).astype(np.float32)
    sat = (rgb.max(-1) - rgb.min(-1)) / np.maximum(rgb.max(-1), 1)
    assert sat[m.mask].mean() > 3 * sat[~m.mask].mean()


def test_mask_needs_a_pixel_size_unless_given_a_downsample():
    reader = open_slide(shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs"))
    with pytest.raises(MissingPixelSizeError, match="--mpp"):
        mask(reader)
    m = mask(reader, downsample=10)
    assert m.mpp is None and m.shape == (357, 445)
    assert mask(open_slide(reader.path, mpp=1.0)).mpp == pytest.approx(8.0)


@pytest.mark.parametrize(
    "slide, reference, min_iou",
    [
        ("tcga-cr-7395-01a-01-ts1.svs", "tissue-mask-tcga-cr-7395.npy", 0.75),
        ("kidney-48-5.tif", "tissue-mask-kidney-48-5.npy", 0.1),
    ],
)
def test_against_histolab_reference_masks(slide, reference, min_iou, record_property):
    """IoU with histolab's TissueMask() output, reported, not tuned to: histolab thresholds grey levels and dilates
    generously (its kidney mask is a blob ~5x the tissue); neither file has a pixel size, so no µm morphology."""
    ref = np.load(shared_path(f"data/labelled/tissue-masks-histolab/{reference}"))
    reader = open_slide(shared_path(f"data/slides/{slide}"))
    ours = mask(reader, downsample=reader.meta.dimensions[0] / ref.shape[1])
    iou = _iou(ours, ref)
    record_property("iou", iou)
    print(f"\n{slide}: IoU with histolab {iou:.3f} (ours {ours.fraction:.3f}, histolab {ref.mean():.3f})")
    assert iou >= min_iou
    resized = np.asarray(Image.fromarray(ours.mask).resize(ref.shape[::-1], Image.Resampling.NEAREST))
    assert (resized & ref).sum() / max(1, resized.sum()) > 0.6  # what we call tissue, histolab does too


def test_georeferenced_raster_mask_is_valid_data():
    reader = open_slide(shared_path("data/aerial/RGB.byte.tif"))
    m = mask(reader)
    assert m.method == "valid-data" and m.downsample == 1.0
    data = reader.read(Box(0, 0, *reader.meta.dimensions))
    np.testing.assert_array_equal(m.mask, (data != 0).any(axis=-1))
    assert 0.5 < m.fraction < 0.8  # the rotated Landsat footprint


def test_alpha_and_no_nodata_rasters():
    alpha = open_slide(shared_path("data/aerial/pix4d_alpha_nodata.tif"))
    m = mask(alpha)
    np.testing.assert_array_equal(m.mask, alpha.read(Box(0, 0, *alpha.meta.dimensions), bands=[3])[..., 0] > 0)
    s2 = open_slide(shared_path("data/labelled/landcover-sentinel2/strzegom_20230301_33u.tif"))
    assert mask(s2).fraction == 1.0  # no nodata, no alpha: everything is data


def test_clean_uses_physical_sizes():
    m = np.zeros((100, 100), bool)
    m[10:60, 10:60] = True  # 50 x 50 px at 8 µm = 160,000 µm²: kept
    m[30:32, 30:32] = False  # a 4-px hole = 256 µm²: filled
    m[80:83, 80:83] = True  # a 9-px speck = 576 µm²: removed
    out = clean(m, pixel_um=8.0, closing_um=0.0, min_object_um2=50_000, min_hole_um2=20_000)
    assert out[30:32, 30:32].all() and not out[80:83, 80:83].any() and out[10:60, 10:60].all()
    # the same pixels at 1 µm/px are 64x smaller in area: the block is now a speck
    assert not clean(m, pixel_um=1.0, closing_um=0.0, min_object_um2=50_000, min_hole_um2=20_000).any()


def test_big_pyramid_mask_finds_the_tissue_block(big_tiff):
    from tests.io.synthetic import tissue_box

    reader = open_slide(big_tiff)
    m = mask(reader)
    x0, y0, x1, y1 = (v / m.downsample for v in tissue_box(50_000))
    truth = np.zeros(m.shape, bool)
    truth[int(np.ceil(y0)) : int(y1), int(np.ceil(x0)) : int(x1)] = True
    inter = (m.mask & truth).sum()
    assert inter / (m.mask | truth).sum() > 0.9


def test_an_image_that_is_all_tissue_is_all_tissue(tmp_path):
    """A crop with no glass (a TMA core, an exported region): Otsu would split the stain in two; all of it is kept."""
    from tests.io.synthetic import ome_pyramid

    rng = np.random.default_rng(0)
    image = np.empty((2048, 2048, 3), np.uint8)
    image[...] = (230, 160, 200)  # pink stroma
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    for cy, cx in rng.integers(0, 2048, (3000, 2)):  # purple nuclei
        image[max(cy - 4, 0) : cy + 4, max(cx - 4, 0) : cx + 4] = (110, 60, 150)
    m = mask(open_slide(ome_pyramid(tmp_path / "crop.ome.tif", image, mpp=0.5)))
    assert m.fraction == 1.0
