"""The done-key: a digest of every setting that changes a slide's outputs, so "done before" means "with these
settings".

It leaves out what changes only how a run goes (workers, device, batch size, prefetch, overwrite), resolves the
default model by name (a run with ``--model`` left out and one naming the default are the same run; the engine
first puts the model chosen for the input in, ``pipeline.choice``) and aliases (``buildings``), and counts
the bytes of files the settings name (weights, ROI and exclusion GeoJSON), not only their names. ``vimscope
segment`` keeps it in the store's metadata and refuses, with a message naming what differs, to skip an output
made with other settings; ``vimscope batch`` keeps it in each slide's state.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

# PipelineConfig fields that change how a run goes, not what it writes: left out of the key.
RUNTIME_KEYS = frozenset(
    {
        "workers",
        "overwrite",
        "device",
        "batch_size",
        "prefetch",
        "progress",
        "verbose",
        "threads",
        "pin_memory",
        "amp_device",
    }
)
FILE_KEYS = ("weights", "roi", "exclude")  # settings that name a file: its content counts


def output_settings(config) -> dict:
    """The settings of ``config`` (a PipelineConfig or a mapping) that change the outputs, as plain data."""
    from vimscope.models.specs import canonical_name
    from vimscope.pipeline.config import DEFAULT_MODEL

    data = dict(config) if isinstance(config, dict) else dataclasses.asdict(config)
    settings = {k: v for k, v in data.items() if k not in RUNTIME_KEYS}
    if settings.get("model") is None and settings.get("weights") is None:
        settings["model"] = DEFAULT_MODEL
    if isinstance(settings.get("model"), str):
        settings["model"] = canonical_name(settings["model"])
    if not settings.get("tta"):  # off: the key of outputs written before the option existed
        settings.pop("tta", None)
    for key in FILE_KEYS:
        path = settings.get(key)
        if isinstance(path, str) and os.path.isfile(path):
            st = os.stat(path)
            settings[key] = {"path": path, "sha256": _file_digest(path, st.st_size, st.st_mtime_ns)}
    return settings


def settings_key(config, overrides: dict | None = None) -> str:
    """A short, stable digest of ``output_settings(config)`` and any per-slide ``overrides`` (manifest boxes)."""
    blob = json.dumps(
        {"config": output_settings(config), "overrides": overrides or {}}, sort_keys=True, default=_jsonable
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def region_overrides(region) -> dict:
    """A run's ``region`` argument (level-0 boxes or shapely geometries) as plain data for the key."""
    if region is None:
        return {}
    items = region if isinstance(region, (list, tuple)) else [region]
    return {"region": [r.to_list() if hasattr(r, "to_list") else getattr(r, "wkt", repr(r)) for r in items]}


def differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for each setting that differs (for the message that refuses a skip)."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys if old.get(k) != new.get(k)]


def _short(value) -> str:
    if isinstance(value, dict) and "path" in value:
        return str(value["path"])
    return json.dumps(value, default=_jsonable) if not isinstance(value, str) else value


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "to_list"):
        return value.to_list()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)
