"""The done-key counts what changes the outputs, and only that."""

from __future__ import annotations

from vimscope.pipeline import PipelineConfig, settings_key
from vimscope.pipeline.donekey import differences, output_settings, region_overrides
from vimscope.types import Box


def test_the_key_follows_the_outputs_not_the_run_mechanics(tmp_path):
    base = PipelineConfig.load(device="cpu")
    key = settings_key(base)
    assert settings_key(base.replace(workers=7, batch_size=64, device="cuda", overwrite=True, prefetch=5)) == key
    assert settings_key(base.replace(model="vim_tiny_nuclei")) == key  # the default model, named or not
    for change in ({"model": "vim_test"}, {"tile": 512}, {"outputs": ["classes"]}, {"strict": True}):
        assert settings_key(base.replace(**change)) != key, change
    assert settings_key(base, region_overrides([Box(0, 0, 10, 10)])) != key


def test_a_file_setting_counts_its_bytes(tmp_path):
    roi = tmp_path / "roi.geojson"
    roi.write_text('{"type": "FeatureCollection", "features": []}')
    config = PipelineConfig.load(roi=str(roi))
    first = settings_key(config)
    roi.write_text('{"type": "FeatureCollection", "features": [] }')
    assert settings_key(config) != first
    assert output_settings(config)["roi"]["path"] == str(roi)


def test_differences_name_each_changed_setting():
    old = output_settings(PipelineConfig.load(model="vim_test"))
    new = output_settings(PipelineConfig.load(tile=512))
    assert differences(old, new) == ["model: vim_test -> vim_tiny_nuclei", "tile: null -> 512"]
