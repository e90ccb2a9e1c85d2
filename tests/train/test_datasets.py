"""Every labelled format of ../shared/data/labelled read from its real files, checked against the data README's
counts; folders of image/mask pairs; the split by image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_path
from vimscope.errors import ConfigError
from vimscope.train.datasets.base import IGNORE_INDEX, LabelledImage, load_source, load_sources
from vimscope.train.datasets.split import choose_validation, split_images


def _objects(inst: np.ndarray) -> int:
    return len(np.unique(inst)) - 1


def test_monuseg_xml_and_per_nucleus_masks():
    root = shared_path("data/labelled/monuseg-train")
    xml_name, mask_name = "TCGA-21-5784-01Z-00-DX1", "TCGA-A7-A13F-01Z-00-DX1"
    images = {
        im.name: im for im in load_source({"kind": "monuseg", "path": str(root), "include": [xml_name, mask_name]})
    }
    xml, masks = images[xml_name], images[mask_name]
    assert xml.image.shape == (1000, 1000, 3) and xml.image.dtype == np.uint8
    assert (_objects(xml.instances), xml.group) == (398, "liver")  # README: 21-5784 398 (XML)
    assert (_objects(masks.instances), masks.group) == (356, "breast")  # README: A7-A13F 356 (masks)
    assert xml.mpp == pytest.approx(0.2527)
    for im in (xml, masks):  # nuclei are darker than the rest (the README's alignment check)
        grey = im.image.mean(axis=2)
        assert grey[im.instances == 0].mean() - grey[im.instances > 0].mean() > 25


def test_monuseg_xml_uses_the_one_pixel_shift_of_the_masks():
    from vimscope.train.datasets.monuseg import read_xml_polygons, xml_instances

    xml = shared_path("data/labelled/monuseg-train/annotations/TCGA-21-5784-01Z-00-DX1.xml")
    first = read_xml_polygons(xml)[0]
    inst = xml_instances(xml, (1000, 1000))
    from skimage.draw import polygon

    rr, cc = polygon(first[:, 1] - 1, first[:, 0] - 1, shape=(1000, 1000))
    own = np.zeros((1000, 1000), bool)
    own[rr, cc] = True
    assert np.array_equal(own & (inst == 1), inst == 1)  # region 1 is exactly polygon(Y - 1, X - 1) minus overlaps


def test_miccai2015_ascii_masks():
    root = shared_path("data/labelled/nuclei-miccai2015")
    images = {im.name: im for im in load_source({"kind": "miccai2015", "path": str(root)})}
    counts = {name: _objects(im.instances) for name, im in images.items()}
    assert counts == {"image01": 351, "image06": 255, "image09": 97, "image14": 139}
    assert images["image01"].image.shape == (488, 643, 3)  # RGBA on disk, alpha dropped
    assert images["image09"].instances.shape == (888, 801)
    assert images["image01"].mpp == 0.5 and images["image09"].mpp == 0.25  # 20x and 40x (README_training)


def test_cryonuseg_imagej_roi_set():
    images = load_source({"kind": "cryonuseg", "path": str(shared_path("data/labelled/nuclei-cryonuseg"))})
    by_name = {im.name: im for im in images}
    assert {name: _objects(im.instances) for name, im in by_name.items()} == {"TCGA-DE-A4MA": 59, "TCGA-S4-A8RO": 116}
    assert by_name["TCGA-DE-A4MA"].mpp == pytest.approx(0.248, abs=1e-3)  # ImageJ resolution tags, µm
    assert by_name["TCGA-S4-A8RO"].mpp == pytest.approx(0.2525, abs=1e-3)
    for im in images:
        assert im.image.shape == (512, 512, 3)
        grey = im.image.mean(axis=2)
        assert grey[im.instances == 0].mean() - grey[im.instances > 0].mean() > 25


def test_tanzania_footprints_are_reprojected_and_clipped():
    folder = shared_path("data/labelled/buildings-tanzania")
    entry = {
        "kind": "vector",
        "image": str(folder / "tanzania_sample.tif"),
        "labels": str(folder / "tanzania_sample.geojson"),
    }
    (im,) = load_source(entry)
    doc = json.loads((folder / "tanzania_sample.geojson").read_text())
    assert len(doc["features"]) == 4440  # README: 4440 polygons over a much larger area
    # independently: which footprints touch the image? (image bounds to lon/lat with pyproj)
    import shapely
    from pyproj import Transformer
    from shapely.geometry import shape

    x0, y0, px = 532854.2400420904, 9366840.75995791, 0.0774800032377243
    to_lonlat = Transformer.from_crs("EPSG:32737", "OGC:CRS84", always_xy=True)
    xs, ys = to_lonlat.transform([x0, x0 + 1000 * px, x0 + 1000 * px, x0], [y0, y0, y0 - 1000 * px, y0 - 1000 * px])
    bounds = shapely.Polygon(zip(xs, ys))
    touching = [f for f in doc["features"] if shape(f["geometry"]).intersection(bounds).area > 0]
    assert 0 < len(touching) < 100
    assert _objects(im.instances) == len(touching)
    assert im.classes.shape == (1000, 1000) and 0.02 < (im.classes == 1).mean() < 0.5
    assert im.mpp == pytest.approx(px)
    grey = im.image.mean(axis=2)  # the roofs differ from the ground: labels sit on the buildings
    assert abs(grey[im.classes == 1].mean() - grey[im.classes == 0].mean()) > 10


def test_sentinel2_mask_zero_means_unlabelled(sentinel2_entry):
    (im,) = load_source(sentinel2_entry)
    assert im.image.shape == (401, 401, 10) and im.image.dtype == np.uint16
    assert im.mpp == 10.0
    assert 0.25 < im.labelled_fraction < 0.35  # README: labels cover about 30% of pixels
    present = set(np.unique(im.classes)) - {IGNORE_INDEX}
    assert present == {1, 2, 3, 4, 5, 7, 8, 9, 10}  # 6 (grassland) is absent in this tile; 0 is never a label


def test_inria_buildings_with_a_value_map():
    folder = shared_path("data/labelled/buildings-inria")
    entry = {
        "kind": "raster_mask",
        "image": str(folder / "aerial_sample.tif"),
        "mask": str(folder / "aerial_sample_labels.tif"),
        "classes": ["background", "building"],
        "value_map": {255: 1},
    }
    (im,) = load_source(entry)
    assert im.classes.max() == 1
    assert (im.classes == 1).mean() == pytest.approx(0.14, abs=0.01)  # README: 14% building


def _write_pairs(tmp_path, suffix=""):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 2:6] = 255
    mask[10:15, 20:25] = 255
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{name}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{name}{suffix}.png")
    return mask


def test_folder_of_binary_instance_masks(tmp_path):
    _write_pairs(tmp_path, "_mask")
    images = load_source({"kind": "folder", "path": str(tmp_path), "mask_suffix": "_mask", "mask_kind": "instances"})
    assert [im.name for im in images] == ["a", "b"]
    assert _objects(images[0].instances) == 2  # connected components
    assert images[0].classes.max() == 1


def test_folder_of_class_masks_with_value_map_and_ignore(tmp_path):
    mask = _write_pairs(tmp_path)
    entry = {"kind": "folder", "path": str(tmp_path), "value_map": {255: 1}, "ignore_values": [7]}
    images = load_source(entry)
    assert np.array_equal(images[0].classes, (mask > 0).astype(np.uint8))
    Image.fromarray(np.full((20, 30), 9, np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(ConfigError, match="value_map"):
        load_source(entry)


def test_unknown_kind_and_missing_masks_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown data kind"):
        load_source({"kind": "nope", "path": "x"})
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    with pytest.raises(ConfigError, match="no mask"):
        load_source({"kind": "folder", "path": str(tmp_path)})


def test_split_is_by_image_and_spread_over_groups():
    images = [
        LabelledImage(f"{g}{i}", np.zeros((4, 4, 3), np.uint8), classes=np.zeros((4, 4), np.uint8), group=g)
        for g in "abc"
        for i in range(4)
    ]
    chosen = choose_validation(images, 0.25, seed=1)
    assert len(chosen) == 3 and {n[0] for n in chosen} == {"a", "b", "c"}
    train, val = split_images(images, chosen)
    assert {im.name for im in val} == set(chosen) and not {im.name for im in train} & set(chosen)
    assert len(train) == 9
    with pytest.raises(ConfigError, match="not in the data"):
        split_images(images, ["zz"])


def test_image_names_must_be_unique_across_entries(tmp_path):
    _write_pairs(tmp_path)
    entry = {"kind": "folder", "path": str(tmp_path), "value_map": {255: 1}}
    with pytest.raises(ConfigError, match="unique"):
        load_sources([entry, entry])
