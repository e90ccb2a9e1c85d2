"""A minimal OGC GeoPackage (1.3) vector writer on the standard library's sqlite3, for GIS users (QGIS, GDAL).

GeoPackage is SQLite with three metadata tables and geometries stored as a small header plus ISO WKB; writing
it needs no GDAL. Vectors are in the source CRS (``EPSG:xxxx`` or any CRS pyproj understands). One layer, one
geometry column (of a declared type, GEOMETRY unless told), attribute columns fixed by ``define`` or the first
feature; no spatial index (readers build one on demand).
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import shapely

from vimscope.writers.atomic import commit_path, output_errors, partial_path, remove_tree

APPLICATION_ID = 0x47504B47  # "GPKG"
USER_VERSION = 10300

_BASE_SRS = [
    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
]


def gpkg_geometry(geom, srs_id: int) -> bytes:
    """GeoPackage binary: 'GP', version 0, flags (little endian, xy envelope), srs id, envelope, ISO WKB."""
    if geom is None or shapely.is_empty(geom):
        return b"GP\x00" + bytes([0b00010001]) + struct.pack("<i", srs_id) + shapely.to_wkb(geom, byte_order=1)
    minx, miny, maxx, maxy = shapely.bounds(geom)
    header = b"GP\x00" + bytes([0b00000011]) + struct.pack("<i4d", srs_id, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geom, byte_order=1, flavor="iso")


def read_gpkg_geometry(blob: bytes):
    """The inverse of ``gpkg_geometry`` (for checks)."""
    flags = blob[3]
    envelope = (flags >> 1) & 0b111
    size = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[envelope]
    return shapely.from_wkb(bytes(blob[8 + size :]))


def _sql_type(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "BOOLEAN"
    if isinstance(value, (int, np.integer)):
        return "INTEGER"
    if isinstance(value, (float, np.floating)):
        return "DOUBLE"
    return "TEXT"


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


class GeoPackageWriter:
    """``add(geometry, properties)`` then ``close()``; written to ``<path>.partial`` and renamed when closed."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        crs: str,
        layer: str = "objects",
        geometry_type: str = "GEOMETRY",
        overwrite: bool = False,
    ) -> None:
        """``geometry_type``: what the layer declares (GIS programs show a GEOMETRY layer as of unknown type);
        e.g. MULTIPOLYGON, with every feature a MultiPolygon."""
        from pyproj import CRS

        self.final_path = Path(path)
        self.partial = partial_path(self.final_path)
        self.layer = layer
        self.geometry_type = geometry_type.upper()
        self.overwrite = overwrite
        self.columns: list[str] | None = None
        self.count = 0
        self._bounds = [np.inf, np.inf, -np.inf, -np.inf]
        crs_obj = CRS.from_user_input(crs)
        auth = crs_obj.to_authority() or ("NONE", None)
        self.srs_id = int(auth[1]) if auth[1] is not None and str(auth[1]).isdigit() else 100000
        with output_errors(self.final_path, self.partial):
            remove_tree(self.partial)
            self._db = sqlite3.connect(self.partial)
            self._create(crs_obj, auth[0])

    def _create(self, crs, organization: str) -> None:
        db = self._db
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {USER_VERSION}")
        db.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
              organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
              description TEXT);
            CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
              identifier TEXT UNIQUE, description TEXT DEFAULT '',
              last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
              min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
              CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
              geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
              CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
              CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
              CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
            """
        )
        wgs84 = ("WGS 84 geodetic", 4326, "EPSG", 4326, _wkt("EPSG:4326"), "longitude/latitude coordinates in WGS 84")
        rows = [*_BASE_SRS, wgs84]
        if self.srs_id not in (4326,):
            rows.append(
                (crs.name, self.srs_id, organization if self.srs_id != 100000 else "NONE", self.srs_id, _wkt(crs), "")
            )
        db.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _create_layer(self, properties: Mapping) -> None:
        self.columns = list(properties)
        cols = "".join(f", {_quote(c)} {_sql_type(v)}" for c, v in properties.items())
        self._db.execute(
            f"CREATE TABLE {_quote(self.layer)} (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom GEOMETRY{cols})"
        )
        self._db.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id) VALUES (?, 'features', ?, ?)",
            (self.layer, self.layer, self.srs_id),
        )
        self._db.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
            (self.layer, self.geometry_type, self.srs_id),
        )
        marks = ", ".join("?" * (len(self.columns) + 1))
        names = ", ".join(["geom", *map(_quote, self.columns)])
        self._insert = f"INSERT INTO {_quote(self.layer)} ({names}) VALUES ({marks})"

    def define(self, example: Mapping) -> None:
        """Create the layer's columns from an example of the properties (their types), before any feature: a layer
        that stays empty still has them."""
        if self.columns is not None:
            raise ValueError("GeoPackage layer: define() comes before the first feature")
        with output_errors(self.final_path, self.partial):
            self._create_layer(dict(example))

    def add(self, geometry, properties: Mapping | None = None) -> None:
        properties = dict(properties or {})
        with output_errors(self.final_path, self.partial):
            if self.columns is None:
                self._create_layer(properties)
            elif extra := set(properties) - set(self.columns):
                raise ValueError(f"GeoPackage layer: unexpected column(s) {sorted(extra)}")
            values = [_plain(properties.get(c)) for c in self.columns]
            self._db.execute(self._insert, [gpkg_geometry(geometry, self.srs_id), *values])
            b = shapely.bounds(geometry)
            self._bounds = [
                min(self._bounds[0], b[0]),
                min(self._bounds[1], b[1]),
                max(self._bounds[2], b[2]),
                max(self._bounds[3], b[3]),
            ]
            self.count += 1

    def close(self) -> Path:
        with output_errors(self.final_path, self.partial):
            if self.columns is None:
                self._create_layer({})
            if self.count:
                self._db.execute(
                    "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? WHERE table_name = ?",
                    (*map(float, self._bounds), self.layer),
                )
            self._db.commit()
            self._db.close()
            commit_path(self.partial, self.final_path, overwrite=self.overwrite)
        return self.final_path

    def abort(self) -> None:
        """Drop the partial file (a failed or cancelled run leaves nothing)."""
        try:
            self._db.close()
        finally:
            remove_tree(self.partial)


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple, dict)):
        import json

        return json.dumps(v)
    return v


def _wkt(crs) -> str:
    from pyproj import CRS

    crs = CRS.from_user_input(crs)
    try:
        return crs.to_wkt("WKT1_GDAL")
    except Exception:  # CRSs with no WKT1 form
        return crs.to_wkt()
