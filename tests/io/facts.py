"""What ../shared/data/README.md says about each real file (sizes, levels, pixel size, CRS): facts to assert.

``size`` is (width, height) of level 0; ``levels`` the (width, height) of every level stored in the file;
``mpp`` µm/px (or CRS units/px when ``crs`` is set), None when the file gives none.
"""

from __future__ import annotations

NDPI = {
    "backend": "openslide",
    "vendor": "hamamatsu",
    "size": (3968, 4864),
    "levels": [(3968, 4864), (1984, 2432), (992, 1216), (496, 608), (248, 304), (124, 152), (62, 76)],
    "mpp": 0.22818,
    "objective": 40.0,
    "bands": 3,
    "dtype": "uint8",
    "tile": (3968, 8),
    "associated": {"macro": (1188, 406)},
}

FACTS: dict[str, dict] = {
    "data/slides/tcga-cr-7395-01a-01-ts1.svs": {
        "backend": "openslide",
        "vendor": "aperio",
        "size": (4443, 3567),
        "levels": [(4443, 3567), (2221, 1783)],
        "mpp": None,
        "objective": None,
        "bands": 3,
        "dtype": "uint8",
        "tile": (256, 256),
        "associated": {"thumbnail": (956, 768)},
    },
    "data/slides/hamamatsu-test3-DAPI-2-387.ndpi": NDPI,
    "data/slides/hamamatsu-test3-TRITC-2-560.ndpi": NDPI,
    "data/slides/small_vectra.qptiff": {
        "backend": "tifffile",
        "vendor": "qptiff",
        "size": (1920, 1440),
        "levels": [(1920, 1440)],
        "bands": 3,
        "band_names": ["DAPI", "FITC", "Cy3"],
        "dtype": "uint8",
        "associated": {"thumbnail": (480, 360), "overview": (201, 398), "label": (199, 120)},
    },
    "data/slides/kidney-48-5.tif": {
        "backend": "tifffile",
        "size": (1493, 901),
        "levels": [(1493, 901)],
        "mpp": None,
        "bands": 3,
        "dtype": "uint8",
    },
    "data/slides/multi-channel.ome.tif": {
        "backend": "tifffile",
        "vendor": "ome-tiff",
        "size": (439, 167),
        "levels": [(439, 167)],
        "bands": 3,
        "dtype": "int8",
    },
    "data/slides/ome-zarr-synthetic/blobs_image_v04.ome.zarr": {
        "backend": "zarr",
        "size": (12, 12),
        "levels": [(12, 12)],
        "mpp": None,
        "bands": 3,
        "dtype": "float64",
    },
    "data/slides/ome-zarr-synthetic/blobs_image_v05.ome.zarr": {
        "backend": "zarr",
        "size": (12, 12),
        "levels": [(12, 12)],
        "mpp": None,
        "bands": 3,
        "dtype": "float64",
    },
    "data/aerial/RGB.byte.tif": {
        "backend": "tifffile",
        "size": (791, 718),
        "levels": [(791, 718)],
        "bands": 3,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "mpp": 300.0,
        "nodata": 0.0,
    },
    "data/aerial/cogeo.tif": {
        "backend": "tifffile",
        "size": (1024, 1024),
        "levels": [(1024, 1024), (512, 512), (256, 256), (128, 128), (64, 64), (32, 32), (16, 16)],
        "bands": 3,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "mpp": 0.597,
        "tile": (512, 512),
    },
    "data/aerial/cog.tif": {
        "backend": "tifffile",
        "size": (2658, 2667),
        "levels": [(2658, 2667), (1329, 1334), (665, 667), (333, 334), (167, 167)],
        "bands": 1,
        "dtype": "uint16",
        "crs": "EPSG:32621",
        "mpp": 100.0,
        "tile": (256, 256),
    },
    "data/aerial/pix4d_alpha_nodata.tif": {
        "backend": "tifffile",
        "size": (686, 758),
        "levels": [(686, 758)],
        "bands": 4,
        "dtype": "uint8",
        "crs": "EPSG:32750",
        "mpp": 0.353,
        "alpha_band": 3,
    },
    "data/aerial/201404_13SED190110_201404_0x1500m_CL_1.tif": {
        "backend": "tifffile",
        "size": (383, 232),
        "levels": [(383, 232)],
        "bands": 3,
        "dtype": "uint8",
        "crs": "EPSG:26913",
        "mpp": 0.15,
    },
    "data/labelled/landcover-sentinel2/strzegom_20230301_33u.tif": {
        "backend": "tifffile",
        "size": (401, 401),
        "levels": [(401, 401)],
        "bands": 10,
        "band_names": ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"],
        "rgb_bands": [2, 1, 0],
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "mpp": 10.0,
    },
}

DEMO = {
    "backend": "openslide",
    "vendor": "aperio",
    "size": (2220, 2967),
    "levels": [(2220, 2967)],
    "mpp": 0.499,
    "objective": 20.0,
    "bands": 3,
    "dtype": "uint8",
    "tile": (240, 240),
    "associated": {"thumbnail": (574, 768), "label": (387, 463), "macro": (1280, 431)},
}


def check_meta(meta, fact: dict) -> None:
    """Assert a SlideMeta (or its to_dict) against one entry of FACTS."""
    get = meta.get if isinstance(meta, dict) else lambda k: getattr(meta, k)
    dims = [tuple(d) for d in get("level_dimensions")]
    native = len(dims) - get("computed_levels")
    assert get("backend") == fact["backend"]
    if "vendor" in fact:
        assert get("vendor") == fact["vendor"]
    assert dims[0] == fact["size"]
    assert dims[:native] == fact["levels"]
    assert get("bands") == fact["bands"]
    assert get("dtype") == fact["dtype"]
    if "mpp" in fact:
        if fact["mpp"] is None:
            assert get("mpp") is None
        else:
            assert abs(get("mpp") - fact["mpp"]) / fact["mpp"] < 2e-3, (get("mpp"), fact["mpp"])
    if "crs" in fact:
        assert get("crs") == fact["crs"]
        assert get("transform") is not None
    else:
        assert get("crs") is None
    if "objective" in fact:
        assert get("objective_power") == fact["objective"]
    if "tile" in fact:
        assert tuple(get("tile_size")) == fact["tile"]
    if "band_names" in fact:
        assert get("band_names") == fact["band_names"]
    if "rgb_bands" in fact:
        assert get("rgb_bands") == fact["rgb_bands"]
    if "nodata" in fact:
        assert get("nodata") == fact["nodata"]
    if "alpha_band" in fact:
        assert get("alpha_band") == fact["alpha_band"] and get("has_alpha")
    if "associated" in fact:
        assert sorted(get("associated")) == sorted(fact["associated"])
