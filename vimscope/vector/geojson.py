"""Reading GeoJSON annotations as QuPath exports them (File > Export objects as GeoJSON), plain or gzipped.

Writing GeoJSON is ``writers.geojson``; this side only reads: regions of interest (``vector.roi``) and training
annotations. A file that is not GeoJSON, or is nested too deeply for the parser, is a ``ConfigError`` with one
line naming the file, never an internal error.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from vimscope.errors import ConfigError


def classification_name(feature: dict) -> str | None:
    """QuPath's classification name (``{"name": ..., "color": ...}`` since 0.2, a plain string before)."""
    props = feature.get("properties") or {}
    c = props.get("classification")
    if isinstance(c, dict):
        return c.get("name")
    return c if isinstance(c, str) else props.get("class")


def read_features(path: str | os.PathLike, *, what: str = "GeoJSON file", bare_geometry: bool = False) -> list:
    """The features of a GeoJSON file (plain or gzipped) as QuPath exports it: a FeatureCollection, a Feature or
    a list of features; with ``bare_geometry`` a lone geometry too. ``what`` names the file in error messages."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        doc = json.loads(raw)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a readable GeoJSON file (nested too deeply)") from None
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"{path}: not a readable GeoJSON file ({type(e).__name__})") from None
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return list(doc.get("features") or [])
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    if bare_geometry and isinstance(doc, dict) and "coordinates" in doc:
        return [{"geometry": doc}]
    expected = (
        "a FeatureCollection, Feature or geometry" if bare_geometry else "a FeatureCollection or a list of features"
    )
    raise ConfigError(f"{path}: expected a GeoJSON {expected}")
