"""State files and the config hash: what counts as 'done with the same settings'."""

from __future__ import annotations

import os

from vimscope.pipeline.config import PipelineConfig
from vimscope.runners.manifest import SlideJob
from vimscope.runners.state import SlideState, StateStore, config_hash, is_current, source_signature
from vimscope.runners.task import SlideTask, slide_digest
from vimscope.types import Box


def test_config_hash_follows_outputs_not_run_mechanics(tmp_path):
    base = PipelineConfig.load(model="vim_test_pointwise").to_dict()
    digest = config_hash(base)
    assert config_hash({**base, "workers": 7, "device": "cuda", "batch_size": 64, "overwrite": True}) == digest
    assert config_hash({**base, "tile": 256}) != digest
    assert config_hash({**base, "precision": "bfloat16"}) != digest
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    first = config_hash({**base, "model": None, "weights": str(weights)})
    weights.write_bytes(b"two!")  # same path, new bytes: the outputs would change
    assert config_hash({**base, "model": None, "weights": str(weights)}) != first


def test_manifest_overrides_enter_the_slide_digest():
    config = PipelineConfig.load(model="vim_test_pointwise")
    plain = SlideJob("/x/a.svs", "a")
    assert slide_digest(config, plain) == slide_digest(config, SlideJob("/y/b.svs", "b"))
    assert slide_digest(config, SlideJob("/x/a.svs", "a", mpp=0.25)) != slide_digest(config, plain)
    assert slide_digest(config, SlideJob("/x/a.svs", "a", roi=(Box(0, 0, 9, 9),))) != slide_digest(config, plain)


def test_done_state_is_current_only_for_the_same_settings_and_file(tmp_path):
    slide = tmp_path / "a.tif"
    slide.write_bytes(b"pixels")
    source = source_signature(slide)
    state = SlideState("a", str(slide), status="done", config_hash="h1", source=source)
    assert is_current(state, "h1", source)
    assert not is_current(state, "h2", source)
    os.utime(slide, ns=(1, 1))  # the file changed since
    assert not is_current(state, "h1", source_signature(slide))


def test_overwrite_redoes_slides_done_by_earlier_runs_only(tmp_path):
    slide = tmp_path / "a.tif"
    slide.write_bytes(b"pixels")
    config = PipelineConfig.load(model="vim_test_pointwise", overwrite=True)
    job = SlideJob(str(slide), "a")
    digest, source = slide_digest(config, job), source_signature(slide)
    earlier = SlideState("a", str(slide), "done", digest, source, attempts=[{"run": "r1", "outcome": "done"}])
    assert SlideTask(job, config, str(tmp_path), "r2").settled(earlier) is None
    assert SlideTask(job, config, str(tmp_path), "r1").settled(earlier) == "done before with the same settings"


def test_state_writes_are_atomic_and_exclusive_creation_never_clobbers(tmp_path):
    store = StateStore(tmp_path)
    assert store.save(SlideState("a", "/s/a.svs"), exclusive=True)
    running = SlideState("a", "/s/a.svs", status="running")
    store.save(running)
    assert not store.save(SlideState("a", "/s/a.svs"), exclusive=True)  # a second run's "pending" loses
    assert store.load("a").status == "running"
    assert [p.name for p in store.state_dir.iterdir()] == ["a.json"], "no temporary files left behind"
    store.path("b").write_text("{truncated")
    assert store.load("b") is None  # unreadable counts as never run: redone, never wrongly skipped
