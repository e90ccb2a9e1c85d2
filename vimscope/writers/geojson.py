"""GeoJSON the way QuPath reads and writes it, streamed to disk one feature at a time.

Each feature: ``id`` (a UUID), ``geometry`` in level-0 pixel coordinates (pixel (r, c) covers [c, c+1) x [r, r+1))
or map coordinates, and ``properties`` with ``objectType`` ("annotation" for class regions, "detection" for
instances), ``classification: {name, color: [r, g, b]}`` and ``measurements`` (a name -> number map).

The collection is never held in memory. Above ``gzip_threshold`` features (10^5) the file switches to gzip on the
fly (what is written so far is recompressed once); it is written under ``<name>.partial`` and renamed on
``close()``, so a failed run leaves nothing under the final name. ``crs`` names the coordinates' CRS with the
GeoJSON 2008 ``crs`` member (for map coordinates in the source CRS); ``rfc7946=True`` writes RFC 7946 GeoJSON:
WGS 84 longitude/latitude (reprojected from ``src_crs`` with pyproj), counter-clockwise exteriors, no ``crs``.
Reading GeoJSON back (regions of interest, annotations) is ``vimscope.vector.geojson``'s job.
"""

from __future__ import annotations

import gzip as gzip_module
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import shapely

from vimscope.writers.atomic import commit_path, output_errors, remove_tree

GZIP_THRESHOLD = 100_000
OBJECT_TYPES = ("annotation", "detection", "cell", "tile")


def qupath_feature(
    geometry,
    *,
    object_type: str = "detection",
    name: str | None = None,
    color: Sequence[int] | None = None,
    measurements: Mapping[str, float] | None = None,
    id: str | None = None,
    properties: Mapping | None = None,
) -> dict:
    """One QuPath feature as a dict (``geometry`` may be shapely or a GeoJSON mapping)."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"objectType must be one of {OBJECT_TYPES}, not {object_type!r}")
    props: dict = {"objectType": object_type}
    if name is not None:
        props["classification"] = {"name": str(name), "color": [int(c) for c in (color or (255, 0, 0))]}
    if measurements:
        props["measurements"] = {str(k): _number(v) for k, v in measurements.items()}
    if object_type == "annotation":
        props["isLocked"] = False
    if properties:
        props.update(properties)
    return {"type": "Feature", "id": id or str(uuid.uuid4()), "geometry": geometry, "properties": props}


def _number(v):
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and not np.isfinite(v) else v


def area_measurements(area_px: float, pixel_size: float | None, unit: str = "µm") -> dict:
    """Area in physical units from a pixel count and the pixel size (µm/px, or map units/px with unit "m")."""
    if pixel_size is None:
        return {"Area px^2": float(area_px)}
    return {f"Area {unit}^2": float(area_px) * float(pixel_size) ** 2}


def named_crs(crs: str) -> dict:
    """The GeoJSON 2008 ``crs`` member (QGIS and GDAL honour it) for coordinates in a source CRS."""
    from pyproj import CRS

    auth = CRS.from_user_input(crs).to_authority(min_confidence=90)
    name = f"urn:ogc:def:crs:{auth[0]}::{auth[1]}" if auth else CRS.from_user_input(crs).to_wkt()
    return {"type": "name", "properties": {"name": name}}


class GeoJSONWriter:
    """Streams features into ``path`` (a FeatureCollection); ``gzip=None`` decides by the feature count."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        gzip: bool | None = None,
        gzip_threshold: int = GZIP_THRESHOLD,
        rfc7946: bool = False,
        src_crs: str | None = None,
        crs: str | None = None,
        precision: int | None = None,
        overwrite: bool = False,
    ) -> None:
        path = Path(path)
        if path.suffix == ".gz":
            path, gzip = path.with_suffix(""), True if gzip is None else gzip
        self.path = path
        self.gzip = gzip
        self.gzip_threshold = int(gzip_threshold)
        self.overwrite = overwrite
        self.count = 0
        self.closed = False
        self.final_path: Path | None = None
        self._transformer = None
        self.rfc7946 = rfc7946
        self.precision = 7 if (rfc7946 and precision is None) else precision
        if rfc7946 and src_crs is not None:
            from pyproj import CRS, Transformer

            self._transformer = Transformer.from_crs(CRS.from_user_input(src_crs), "OGC:CRS84", always_xy=True)
        self._gz = bool(gzip)
        self._partial = self._partial_for(self._gz)
        with output_errors(self.path, None):
            self._file = self._open(self._partial, self._gz, "wb")
            header = '{"type":"FeatureCollection",'
            if crs is not None and not rfc7946:
                header += '"crs":' + json.dumps(named_crs(crs)) + ","
            self._file.write((header + '"features":[\n').encode())

    def _partial_for(self, gz: bool) -> Path:
        return self._final_for(gz).with_name(self._final_for(gz).name + ".partial")

    def _final_for(self, gz: bool) -> Path:
        return self.path.with_name(self.path.name + ".gz") if gz else self.path

    @staticmethod
    def _open(path: Path, gz: bool, mode: str):
        # mtime=0 keeps the gzip bytes identical between identical runs
        return gzip_module.GzipFile(path, mode, compresslevel=6, mtime=0) if gz else open(path, mode)

    def _geometry_json(self, geometry) -> str:
        if isinstance(geometry, Mapping):
            geometry = shapely.geometry.shape(geometry)
        if self._transformer is not None:
            t = self._transformer
            geometry = shapely.transform(geometry, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        if self.rfc7946:
            geometry = shapely.orient_polygons(geometry, exterior_cw=False)
        if self.precision is not None:
            geometry = shapely.set_precision(geometry, 10.0**-self.precision, mode="pointwise")
        return shapely.to_geojson(geometry)

    def add(self, feature: Mapping) -> None:
        """Append one feature (e.g. from ``qupath_feature``); its geometry may be shapely or a mapping."""
        self.add_many([feature])

    def add_many(self, features: Sequence[Mapping]) -> None:
        """Append features in order; shapely geometries are turned into JSON together (one call)."""
        if self.closed:
            raise ValueError("GeoJSONWriter is closed")
        texts = self._geometry_texts([f["geometry"] for f in features])
        for feature, geometry in zip(features, texts):
            rest = {k: v for k, v in feature.items() if k not in ("type", "id", "geometry")}
            fid = feature.get("id") or str(uuid.uuid4())
            text = (
                '{"type":"Feature","id":'
                + json.dumps(str(fid))
                + ',"geometry":'
                + geometry
                + ("," + json.dumps(rest, ensure_ascii=False, separators=(",", ":"))[1:] if rest else "}")
            )
            self._write([text])

    def add_texts(self, geometries: Sequence, ids: Sequence[str], properties: Sequence[str]) -> None:
        """Append features from their parts: geometries (shapely), ids, and properties as JSON text (e.g. from
        ``featuretext.PropertiesTemplate``); the same bytes as ``add_many`` of the same features."""
        self.add_feature_texts(self.feature_texts(geometries, ids, properties))

    def feature_texts(self, geometries: Sequence, ids: Sequence[str], properties: Sequence[str]) -> list[str]:
        """The features ``add_texts`` writes, as text, without writing them: any thread may build them while
        another writes, in order, with ``add_feature_texts``."""
        from vimscope.writers.geojsontext import feature_text

        texts = self._geometry_texts(list(geometries))
        return [feature_text(f, g, p) for f, g, p in zip(ids, texts, properties)]

    def add_feature_texts(self, texts: list[str]) -> None:
        """Append features built by ``feature_texts``."""
        if self.closed:
            raise ValueError("GeoJSONWriter is closed")
        self._write(texts)

    def _geometry_texts(self, geoms: list) -> list[str]:
        plain = self._transformer is None and not self.rfc7946 and self.precision is None
        if plain and geoms and all(isinstance(g, shapely.Geometry) for g in geoms):
            from vimscope.writers.geojsontext import polygon_texts  # pixel outlines without GEOS's writer

            texts = polygon_texts(geoms)
            return texts if texts is not None else shapely.to_geojson(np.asarray(geoms, dtype=object)).tolist()
        return [self._geometry_json(g) for g in geoms]

    def _write(self, texts: list[str]) -> None:
        """Write whole features (comma-separated after the first); past the threshold the file turns to gzip. An
        uncompressed batch that stays below it goes in one write."""
        if not texts:
            return
        with output_errors(self.path, self._partial):
            if not self._gz and (self.gzip is not None or self.count + len(texts) <= self.gzip_threshold):
                joined = ("\n," if self.count else "") + "\n,".join(texts)
                self._file.write(joined.encode("utf-8"))
                self.count += len(texts)
                return
            for text in texts:
                self._file.write((("\n," if self.count else "") + text).encode("utf-8"))
                self.count += 1
                if self.gzip is None and not self._gz and self.count > self.gzip_threshold:
                    self._switch_to_gzip()

    def _switch_to_gzip(self) -> None:
        """Past the threshold: recompress what is written so far once and go on in gzip."""
        self._file.close()
        target = self._partial_for(True)
        with open(self._partial, "rb") as src, self._open(target, True, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        self._partial.unlink()
        self._partial, self._gz = target, True
        self._file = self._open(target, True, "ab")

    def close(self) -> Path:
        """Finish the collection and rename it to ``<path>`` or ``<path>.gz``; returns the final path."""
        if self.closed:
            return self.final_path
        with output_errors(self.path, self._partial):
            self._file.write(b"\n]}\n")
            self._file.close()
            self.closed = True
            final = self._final_for(self._gz)
            stale = self._final_for(not self._gz)
            commit_path(self._partial, final, overwrite=self.overwrite)
            if self.overwrite and stale.exists():
                remove_tree(stale)
        self.final_path = final
        return final

    def abort(self) -> None:
        """Drop the partial file (for callers that restart a stage from scratch)."""
        if not self.closed:
            self._file.close()
            self.closed = True
        remove_tree(self._partial)

    def __enter__(self) -> GeoJSONWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self._file.close()
            self.closed = True
