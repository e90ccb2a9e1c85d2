"""Web-map tile sets mosaicked by area: names, georeference, gaps, zooms, and the shared HOT/fAIr tiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_path
from vimscope.errors import ConfigError
from vimscope.train.datasets.base import IGNORE_INDEX, load_source
from vimscope.train.datasets.webtiles import ground_metres_per_pixel, tile_areas


def test_ground_pixel_size_follows_zoom_and_latitude():
    n = 2**21
    equator = ground_metres_per_pixel(n / 2, 21)
    assert equator == pytest.approx(2 * math.pi * 6378137 / (256 * n), rel=1e-12)  # 7.46 cm at zoom 21
    assert ground_metres_per_pixel(2**19 / 2, 19) == pytest.approx(4 * equator)  # the equator row at zoom 19
    # row of latitude 60° N: the tile edge y = n (1 - asinh(tan φ) / π) / 2; the ground pixel is half the equator's
    y60 = n * (1 - math.asinh(math.tan(math.radians(60))) / math.pi) / 2
    assert ground_metres_per_pixel(y60, 21) == pytest.approx(equator / 2, rel=1e-9)


def test_tile_areas_group_touching_tiles_only():
    tiles = {(0, 0), (1, 1), (2, 1), (5, 5), (5, 7)}
    areas = tile_areas(tiles)
    assert areas == [[(0, 0), (1, 1), (2, 1)], [(5, 5)], [(5, 7)]]


def _tile(folder, name, value, building=None):
    img = np.full((256, 256, 3), value, np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    if building is not None:
        r, c = building
        mask[r : r + 20, c : c + 30] = 255
        img[r : r + 20, c : c + 30] = 0
    Image.fromarray(img).save(folder / "images" / f"{name}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


def test_tiles_are_mosaicked_per_area_with_gaps_unlabelled(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    y = 2**20  # the equator row at zoom 21
    _tile(tmp_path, f"OAM-10-{y}-21", 50, building=(10, 10))
    _tile(tmp_path, f"OAM-11-{y + 1}-21", 100, building=(100, 200))  # diagonal neighbour: same area
    _tile(tmp_path, f"OAM-40-{y}-21", 150)  # far away: its own area
    _tile(tmp_path, f"OAM-5-{y // 4}-19", 200)
    entry = {"kind": "web_tiles", "path": str(tmp_path), "value_map": {255: 1}, "name": "town"}
    images = {im.name: im for im in load_source(entry)}
    assert sorted(images) == ["town-z19-0", "town-z21-0", "town-z21-1"]
    a = images["town-z21-0"]
    assert a.shape == (512, 512) and a.group == "town"
    assert (a.image[:256, :256] == 50).sum() > 0 and a.image[256, 256, 0] == 100
    assert (a.classes[10:30, 10:40] == 1).all() and (a.classes[356:376, 456:486] == 1).all()
    assert (a.classes[:256, 256:] == IGNORE_INDEX).all() and (a.classes[256:, :256] == IGNORE_INDEX).all()
    assert a.classes[:256, :256].max() == 1 and (a.classes[:256, :256] == 0).sum() == 256 * 256 - 600
    assert a.mpp == pytest.approx(ground_metres_per_pixel(y + 1, 21), rel=1e-6)  # at the area's middle row
    assert images["town-z19-0"].mpp == pytest.approx(4 * a.mpp, rel=1e-3)
    only = load_source({**entry, "zooms": [19]})
    assert [im.name for im in only] == ["town-z19-0"]
    (tmp_path / "masks" / f"OAM-40-{y}-21.png").unlink()
    with pytest.raises(ConfigError, match="no mask for tile 40"):
        load_source(entry)


def test_shared_hot_oam_tiles_mosaic_into_areas():
    root = shared_path("data/labelled/buildings-hot-oam/4")
    images = load_source({"kind": "web_tiles", "path": str(root), "value_map": {255: 1}, "zooms": [21]})
    assert len(images) == 2 and sum(im.shape[0] * im.shape[1] for im in images) == 2 * 1024 * 2048
    for im in images:
        assert im.mpp == pytest.approx(0.0724, abs=5e-4)  # zoom 21 at 14° N
        building = (im.classes == 1).mean()
        assert 0.1 < building < 0.35 and not (im.classes == IGNORE_INDEX).any()


def _lonlat(px: float, py: float, z: int = 21) -> list[float]:
    """Lon/lat of a web-map pixel position (pixels of 256-px tiles at zoom ``z``)."""
    n = 256 * 2**z
    return [px / n * 360 - 180, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * py / n))))]


def _box(x0, y0, x1, y1) -> dict:
    ring = [_lonlat(x, y) for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def test_footprints_give_instances_and_touching_footprints_a_carved_gap(tmp_path):
    import json

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    y = 2**20
    for x in (10, 11):
        Image.fromarray(np.full((256, 256, 3), 80, np.uint8)).save(tmp_path / "images" / f"OAM-{x}-{y}-21.png")
    mask = np.zeros((256, 512), np.uint8)
    mask[20:60, 100:300] = 255  # two buildings sharing the wall at column 200 (it crosses the tile seam at 256)
    mask[100:120, 400:430] = 255  # a third one on its own
    for i, x in enumerate((10, 11)):
        Image.fromarray(mask[:, 256 * i : 256 * (i + 1)]).save(tmp_path / "masks" / f"OAM-{x}-{y}-21.png")
    ox, oy = 10 * 256, y * 256
    boxes = [(100, 20, 200, 60), (200, 20, 300, 60), (400, 100, 430, 120)]
    doc = {"type": "FeatureCollection", "features": [_box(ox + a, oy + b, ox + c, oy + d) for a, b, c, d in boxes]}
    (tmp_path / "labels.geojson").write_text(json.dumps(doc))
    entry = {"kind": "web_tiles", "path": str(tmp_path), "value_map": {255: 1}, "labels": "labels.geojson"}
    (plain,) = load_source(entry)
    assert plain.instances.max() == 3 and ((plain.instances > 0) == (mask == 255)).all()
    assert len(np.unique(plain.instances[20:60, 100:200])) == 1 != plain.instances[40, 150] - plain.instances[40, 250]
    assert ((plain.classes == 1) == (mask == 255)).all()  # no gap asked for: the set's mask as it is
    (carved,) = load_source({**entry, "touching_gap_m": 0.3})  # 0.3 m at 7.46 cm/px: 2 px on each side
    gap = (plain.classes == 1) & (carved.classes == 0)
    assert gap[20:60, 198:202].all() and gap.sum() == 40 * 4
    with pytest.raises(ConfigError, match="needs labels"):
        load_source({"kind": "web_tiles", "path": str(tmp_path), "touching_gap_m": 0.3})


def test_shared_footprints_reproduce_the_masks():
    root = shared_path("data/labelled/buildings-hot-oam/4")
    entry = {"kind": "web_tiles", "path": str(root), "value_map": {255: 1}, "zooms": [21], "labels": "labels.geojson"}
    for im in load_source(entry):
        assert ((im.instances > 0) == (im.classes == 1)).all()  # the fAIr masks are this fill of the footprints
        assert im.instances.max() > 40
