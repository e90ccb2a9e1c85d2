"""``iter_run``: one slide through every stage, as a stream of ``Progress`` events; ``run`` drains it.

slide -> plan (``pipeline.plan``: model, tiles, memory, region, keys; frozen) -> open (``pipeline.runstate``: store,
resume record, stitcher) -> tile loop (``pipeline.loop``) -> finish (``pipeline.finish``: instances, pyramids,
GeoJSON, preview, summary) -> publish. The store lives under ``<stem>.ome.zarr.partial`` and every other output
in a staging folder inside it until everything is written; then the store is renamed and the outputs move
beside it. An output folder that holds the slide done with the same settings is skipped; one done with other
settings is refused with a message naming them (``pipeline.donekey``), never silently counted as done.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vimscope.errors import ConfigError, OutputError
from vimscope.pipeline.choice import choose_model
from vimscope.pipeline.config import PipelineConfig
from vimscope.pipeline.donekey import differences, output_settings, region_overrides, settings_key
from vimscope.pipeline.loop import make_loader, tile_loop
from vimscope.pipeline.outputs import OutputPaths, ensure_folder, output_paths, settle_staged, slide_stem
from vimscope.pipeline.plan import make_plan
from vimscope.pipeline.report import plan_message, read_summary
from vimscope.pipeline.runstate import Run, open_run
from vimscope.types import CancelToken, Progress

__all__ = ["iter_run", "run", "RunResult", "slide_stem", "output_paths", "make_loader"]


@dataclass
class RunResult:
    """What a finished (or skipped) run leaves: its summary and the paths of its outputs."""

    summary: dict
    paths: dict[str, Path]
    skipped: bool = False
    report: str = ""
    notes: list[str] = field(default_factory=list)


def _as_config(config) -> PipelineConfig:
    if config is None:
        return PipelineConfig.load()
    if isinstance(config, PipelineConfig):
        config.validate()
        return config
    if isinstance(config, dict):
        return PipelineConfig.load(**config)
    raise ConfigError(f"config must be a PipelineConfig or a mapping, not {type(config).__name__}")


def iter_run(
    slide,
    config: PipelineConfig | dict | None = None,
    *,
    out: str | Path,
    region=None,
    cancel: CancelToken | None = None,
    model: torch.nn.Module | None = None,
) -> Iterator[Progress]:
    """Run ``config`` on ``slide`` (a path or an open SlideReader), writing into the folder ``out``.

    ``region``: level-0 boxes or shapely polygons to restrict the run to. ``cancel``: checked between batches;
    a cancelled run flushes what it has and raises ``Cancelled`` (rerun to resume). ``model``: an already
    built model (with ``.spec``) instead of the configured one. Yields ``Progress`` events; the last one
    (stage ``done``) carries the ``RunResult`` in ``outputs["result"]``.
    """
    from vimscope.io import open_slide

    config = _as_config(config)
    own = not hasattr(slide, "meta")
    reader = open_slide(slide, mpp=config.mpp) if own else slide
    try:
        t0 = time.perf_counter()
        paths = OutputPaths(Path(out), slide_stem(reader.meta.path))
        ensure_folder(paths.folder)
        # the model chosen for this input (``pipeline.choice``) is part of the settings a finished output recorded
        done = _done_before(paths, choose_model(config, reader.meta, model)[0], region)
        if done is not None:
            yield done
            return
        current = open_run(make_plan(reader, config, paths.folder, region, model), t0)
        try:
            yield from tile_loop(current, cancel, plan_message(current))
            yield from _finish(current)
        except BaseException:
            if current.followers is not None:  # instances / regions beside the loop: stop them, drop their files
                current.followers.abort()
            with contextlib.suppress(Exception):
                current.writer.close()  # what was queued reaches the disk (a rerun resumes from it)
            raise
    finally:
        if own:
            with contextlib.suppress(Exception):
                reader.close()


def run(slide, config=None, *, out, region=None, cancel=None, model=None, on_progress=None) -> RunResult:
    """Drain ``iter_run``; ``on_progress(event)`` sees every event. Returns the run's result."""
    result = None
    for event in iter_run(slide, config, out=out, region=region, cancel=cancel, model=model):
        if on_progress is not None:
            on_progress(event)
        if event.stage == "done":
            result = event.outputs.get("result")
    return result


def saved_settings(store: Path) -> tuple[str | None, dict]:
    """The done-key and settings a finished store was made with (``(None, {})`` when it records none)."""
    try:
        attrs = json.loads((Path(store) / ".zattrs").read_text())
    except (OSError, ValueError):
        return None, {}
    metadata = (attrs.get("vimscope") or {}).get("metadata") or {}
    return metadata.get("settings_key"), metadata.get("settings") or {}


def _done_before(paths: OutputPaths, config: PipelineConfig, region=None) -> Progress | None:
    """The ``done`` event of a slide finished before with the same settings; None when it must run. A finished
    store made with other settings is an ``OutputError`` naming what differs (never a silent skip)."""
    settle_staged(paths.zarr)  # a run killed right after renaming its store: its outputs move out now
    if not paths.zarr.exists() or config.overwrite:
        return None
    key, settings = saved_settings(paths.zarr)
    if key is not None and key != settings_key(config, region_overrides(region)):
        changed = differences(settings, output_settings(config)) or ["region: another region"]
        raise OutputError(
            f"{paths.zarr} was made with other settings ({'; '.join(changed[:4])}); "
            "--overwrite replaces it, or write to another folder with -o"
        )
    how = "with the same settings" if key is not None else "(its settings are not recorded)"
    report = f"{paths.stem}: done before {how}, skipped (--overwrite runs it again)"
    result = RunResult(read_summary(paths.final("summary")), paths.as_dict(), skipped=True, report=report)
    return Progress("done", 1, 1, message=report, outputs={"result": result, "zarr": paths.zarr})


def _finish(current: Run) -> Iterator[Progress]:
    from vimscope.pipeline import finish

    stats, tiling = current.stats, current.plan.tiling
    stats.timings["compute"] = current.record.seconds + time.perf_counter() - stats.t0
    result = None
    for event in finish.finish(current):
        if isinstance(event, Progress):
            yield event
        else:
            result = RunResult(**event)
    outputs = {
        "zarr": current.plan.paths.zarr,
        "scale": tiling.scale,
        "plan": tiling,
        "out_shape": tuple(tiling.out_shape),
        "result": result,
    }
    yield Progress("done", 1, 1, message=result.report, outputs=outputs)
