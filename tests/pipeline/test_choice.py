"""What a run picks from its input (``pipeline.choice``), model aliases, and how both enter the done-key."""

from __future__ import annotations

import pytest

from vimscope.errors import ConfigError, ModelError
from vimscope.io.meta import SlideMeta
from vimscope.models import canonical_name, load_spec, model_aliases
from vimscope.pipeline import PipelineConfig, settings_key
from vimscope.pipeline.choice import GEO_DEFAULT_MODEL, choose_model, default_model, formats_for
from vimscope.pipeline.config import DEFAULT_MODEL
from vimscope.pipeline.describe import describe_model

UTM = dict(crs="EPSG:26914", transform=(617100.0, 0.3, 0.0, 3344400.0, 0.0, -0.3), mpp=0.3, crs_units="metre")


def _meta(**kw) -> SlideMeta:
    return SlideMeta(path="x.tif", backend="tifffile", level_dimensions=[(1000, 1000)], level_downsamples=[1.0], **kw)


def test_buildings_is_an_alias_of_the_shipped_building_model():
    assert model_aliases() == {"buildings": "unet_buildings"} and canonical_name("buildings") == "unet_buildings"
    spec = load_spec("buildings")
    assert spec.name == "unet_buildings" and spec.output == "classes" and spec.mpp == 0.15
    assert [c.name for c in spec.classes] == ["background", "building"]
    assert describe_model("buildings")["aliases"] == ["buildings"]
    with pytest.raises(ModelError, match=r"buildings \(= unet_buildings\)"):
        load_spec("bulidings")


def test_rasters_with_a_crs_get_the_buildings_model_and_slides_never_do():
    assert default_model(_meta(mpp=0.25)) == (DEFAULT_MODEL, None)  # a slide (µm/px)
    assert default_model(_meta(transform=UTM["transform"], mpp=0.3)) == (DEFAULT_MODEL, None)  # no CRS: not a map
    name, why = default_model(_meta(**UTM))
    assert name == GEO_DEFAULT_MODEL == "unet_buildings" and "georeferenced" in why and "--model" in why
    config = PipelineConfig.load()
    chosen, why = choose_model(config, _meta(**UTM))
    assert chosen.model == "unet_buildings" and why and config.model is None
    assert choose_model(config, _meta(mpp=0.25)) == (config, None)
    named = PipelineConfig.load(model="vim_test")
    assert choose_model(named, _meta(**UTM)) == (named, None)  # a named model always wins
    weights = PipelineConfig.load(weights="w.safetensors")
    assert choose_model(weights, _meta(**UTM)) == (weights, None)


def test_a_model_given_to_the_run_wins_unless_it_is_the_chosen_one():
    class Module:
        def __init__(self, name):
            self.spec = type("Spec", (), {"name": name})()

    config = PipelineConfig.load()
    assert choose_model(config, _meta(**UTM), Module("vim_test")) == (config, None)
    assert choose_model(config, _meta(**UTM), Module("unet_buildings"))[0].model == "unet_buildings"


def test_rasters_the_buildings_model_cannot_read_are_refused_with_the_way_out():
    config = PipelineConfig.load()
    degrees = {**UTM, "crs": "EPSG:4326", "crs_units": "degree", "mpp": 2.7e-6}
    with pytest.raises(ConfigError, match="degree.*--target-mpp"):
        choose_model(config, _meta(**degrees))
    with pytest.raises(ConfigError, match="300 m pixels, too coarse"):
        choose_model(config, _meta(**{**UTM, "mpp": 300.0}))
    # a resolution given: the user knows what they ask for
    assert choose_model(config.replace(target_mpp=2e-6), _meta(**degrees))[0].model == "unet_buildings"


def test_gis_formats_join_for_rasters_with_a_crs_and_need_one():
    config = PipelineConfig.load()
    assert config.formats == ["ome-zarr"] and config.geo_formats == ["geotiff", "gpkg"]
    assert formats_for(config, _meta(**UTM)) == ["ome-zarr", "geotiff", "gpkg"]
    assert formats_for(config, _meta(mpp=0.25)) == ["ome-zarr"]
    assert formats_for(config.replace(geo_formats=[]), _meta(**UTM)) == ["ome-zarr"]
    with pytest.raises(ConfigError, match="not georeferenced: --format gpkg needs a CRS"):
        formats_for(config.replace(formats=["ome-zarr", "gpkg"]), _meta(mpp=0.25))
    with pytest.raises(ConfigError, match="unknown format 'shp'"):
        PipelineConfig.load(geo_formats=["shp"])


def test_the_done_key_names_models_by_their_packaged_name():
    base = PipelineConfig.load()
    assert settings_key(base.replace(model="buildings")) == settings_key(base.replace(model="unet_buildings"))
    assert settings_key(base) == settings_key(base.replace(model=DEFAULT_MODEL))
    assert settings_key(base) != settings_key(base.replace(model="unet_buildings"))
