"""Class regions of a raster with a CRS as footprints a GIS opens: GeoJSON and a GeoPackage in the raster's CRS.

Each region (a building, for the buildings model) is traced from the class map band by band
(``vector.iter_class_regions``, pixel-exact, slivers dropped, cut to the image and the region of interest) and
gets these attributes, in GeoJSON ``properties`` and as GeoPackage columns:

- ``id``: a UUID 5 (URL namespace) of ``vimscope:footprint/<crs>/<class>/<x>/<y>``, where x, y is the interior
  point (``shapely.point_on_surface``) of the pixel-exact outline in map coordinates, in tenths of an output pixel.
  The same class map gives the same ids whatever the band height or the order regions finish in, and a footprint
  keeps its id in a run over a larger area as long as its outline is the same.
- ``class``: the class name.
- ``area_m2``: the ground area of the written (simplified) footprint in m² (``vector.ground.ground_area_m2``: plane
  area in metres for projected CRSs, geodesic for geographic and Mercator ones).
- ``confidence``: the mean probability of the class over the output pixels the region covers, from the stitched
  probabilities the run keeps for this (uint8, so steps of 1/255; published in the store only with
  ``--probabilities``).

Outlines are simplified by one output pixel and squared where rectilinear (``vector.footprints.regularise``);
holes smaller than the smallest region written (``MIN_REGION_AREA`` output pixels) are filled. The squaring works in
map coordinates: in a geographic CRS (degrees) its right angles are right angles on the ground only near the
equator (the default model refuses such rasters unless ``--target-mpp`` is given: ``pipeline.choice``).
The GeoJSON keeps QuPath's keys (objectType, classification, measurements) beside these.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
import shapely

from vimscope.instances.touching import SplitParams
from vimscope.pipeline.runstate import Run
from vimscope.types import Box

BATCH = 256  # regions per batch: outline to map, ids and areas run on arrays of this many
KEEP_BANDS = 3  # probability bands kept: a region finishes in the band it ends in, most start in it or the last
LAYER = "regions"  # the GeoPackage layer: one row per region, with its class


class ProbabilityBands:
    """The stitched probabilities of the class-map bands the tracer read last (``add`` as it reads them), so the
    confidence of a region that lies in them costs no read; others are read from the store."""

    def __init__(self, writer, keep: int = KEEP_BANDS) -> None:
        self.writer = writer
        self.keep = keep
        self._bands: OrderedDict[int, tuple[Box, np.ndarray]] = OrderedDict()

    def add(self, box: Box) -> None:
        self._bands[box.y] = (box, np.asarray(self.writer.read_block("probabilities", box)))
        while len(self._bands) > self.keep:
            self._bands.popitem(last=False)

    def window(self, channel: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Probabilities (uint8) of ``channel`` in output rows [r0, r1), columns [c0, c1)."""
        pieces, row = [], r0
        for box, data in self._bands.values():
            if box.y <= row < box.y1:
                stop = min(r1, box.y1)
                pieces.append(data[channel, row - box.y : stop - box.y, c0 - box.x : c1 - box.x])
                row = stop
        if row >= r1:
            return np.concatenate(pieces, axis=0)
        return np.asarray(self.writer.read_block("probabilities", Box(c0, r0, c1 - c0, r1 - r0)))[channel]


def mean_inside(poly, probabilities: ProbabilityBands, channel: int, out_shape: tuple[int, int]) -> float:
    """The mean probability (0-1) of ``channel`` over the output pixels whose centre lies in ``poly`` (output px)."""
    from vimscope.vector.polygons import rasterize

    h, w = out_shape
    minx, miny, maxx, maxy = poly.bounds
    c0, r0 = max(0, int(np.floor(minx))), max(0, int(np.floor(miny)))
    c1, r1 = min(w, int(np.ceil(maxx))), min(h, int(np.ceil(maxy)))
    if c1 <= c0 or r1 <= r0:
        return float("nan")
    local = shapely.transform(poly, lambda xy: xy - np.array([c0, r0]))
    inside = rasterize([local], [1], (r1 - r0, c1 - c0), dtype=bool)
    if not inside.any():
        return float("nan")
    return float(probabilities.window(channel, r0, r1, c0, c1)[inside].mean()) / 255.0


def footprint_id(crs: str, name: str, point: tuple[float, float], quantum: float) -> str:
    """The id of a footprint (see the module docstring): its interior point quantised to ``quantum`` map units."""
    x, y = (int(round(v / quantum)) for v in point)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vimscope:footprint/{crs}/{name}/{x}/{y}"))


def write_footprints(run: Run, wait_rows=None) -> dict[str, Path]:
    """Trace, measure and write the footprints of ``run`` (``exports.class_regions`` for a raster with a CRS);
    returns the staged paths by output name (``geojson``, ``gpkg``)."""
    from vimscope.pipeline.regions import traced_regions
    from vimscope.vector.ground import map_pixel_size

    p = run.plan
    tiling, meta = p.tiling, p.reader.meta
    h, w = tiling.out_shape
    probabilities = ProbabilityBands(run.writer)
    # pixel-exact outlines: the confidence reads the pixels, the footprint is simplified in map units
    regions = traced_regions(run, wait_rows, on_band=probabilities.add, simplify=0)
    sinks = _Sinks(run)
    pixel = map_pixel_size(meta.transform, tiling.scale)
    split = SplitParams.from_dict((p.spec.postprocess or {}).get("split"))
    try:
        batch: list = []
        for value, region in regions:
            if value >= len(p.classes):
                continue
            pieces = split_region(region, tiling.scale, split.in_pixels(pixel)) if split and value else [region]
            for poly in pieces:
                batch.append((value, poly, _confidence(poly, value, probabilities, tiling.scale, (h, w))))
            if len(batch) >= BATCH:
                sinks.add(_footprints(batch, p.classes, meta, pixel))
                batch.clear()
        sinks.add(_footprints(batch, p.classes, meta, pixel))
        if wait_rows is not None:
            wait_rows(h)  # a loop stopped meanwhile: no output under its final name
        return sinks.close()
    except BaseException:
        sinks.abort()
        raise


def split_region(poly, scale: float, params: tuple[float, float, float]) -> list:
    """A region (level-0 px) as the buildings it holds: rasterised at output pixels (centres inside), split where
    buildings touch (``instances.split_touching``, thresholds in output px), each piece traced back along pixel
    edges. A region that does not split comes back as it is; pieces under the minimum area are dropped."""
    from vimscope.instances.touching import split_touching
    from vimscope.vector.outlines import trace_regions

    out_poly = shapely.transform(poly, lambda xy: xy / scale) if scale != 1.0 else poly
    x0, y0, x1, y1 = (int(np.floor(v)) for v in shapely.bounds(out_poly))
    cols, rows = np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5
    mask = shapely.contains_xy(out_poly, cols[None, :], rows[:, None])
    labels = split_touching(mask, *params)
    if labels.max() <= 1 and np.array_equal(labels > 0, mask):
        return [poly]
    pieces, _ = trace_regions(labels, background=0)
    shift = np.array([x0, y0], dtype=float)
    return [shapely.transform(piece, lambda xy: (xy + shift) * scale) for piece in pieces]


def _confidence(poly, value: int, probabilities: ProbabilityBands, scale: float, out_shape) -> float | None:
    """The mean class probability over a region given in level-0 px (the class map is in output px)."""
    out_poly = shapely.transform(poly, lambda xy: xy / scale) if scale != 1.0 else poly
    mean = mean_inside(out_poly, probabilities, value, out_shape)
    return None if np.isnan(mean) else round(mean, 4)  # no pixel centre inside (a clipped sliver): no value


def _footprints(batch: list, classes, meta, pixel: float) -> list[tuple]:
    """(footprint in map coordinates, properties) of each (class value, level-0 outline, confidence)."""
    from vimscope.vector.footprints import regularise
    from vimscope.vector.ground import ground_area_m2, to_map
    from vimscope.vector.regions import MIN_REGION_AREA

    if not batch:
        return []
    exact = to_map(np.array([b[1] for b in batch], dtype=object), meta.transform)
    points = shapely.get_coordinates(shapely.point_on_surface(exact))
    # holes are dropped as regions are: below MIN_REGION_AREA output pixels
    shapes = np.array([regularise(g, pixel, min_hole=MIN_REGION_AREA * pixel**2) for g in exact], dtype=object)
    # squaring may move a wall on the image's edge outward by a fraction of a pixel: cut back to the image
    image = to_map(shapely.box(0, 0, *meta.dimensions), meta.transform)
    outside = ~shapely.within(shapes, image)
    if outside.any():
        shapes[outside] = shapely.intersection(shapes[outside], image)
    areas = ground_area_m2(shapes, meta.crs)
    out = []
    for (value, _, confidence), shape, point, area in zip(batch, shapes, points, areas):
        name = classes[value].name
        props = {
            "id": footprint_id(meta.crs, name, tuple(point), pixel / 10),
            "class": name,
            "area_m2": float(area),
            "confidence": confidence,
        }
        out.append((value, shape, props))
    return out


class _Sinks:
    """The GeoJSON and GeoPackage writers a run asked for, fed the same footprints."""

    def __init__(self, run: Run) -> None:
        from vimscope.writers.geojson import GeoJSONWriter
        from vimscope.writers.gpkg import GeoPackageWriter

        p = run.plan
        meta = p.reader.meta
        self.classes = p.classes
        p.paths.staging.mkdir(parents=True, exist_ok=True)
        self.geojson = self.gpkg = None
        if "geojson" in p.config.outputs:
            self.geojson = GeoJSONWriter(p.paths.staged("geojson"), overwrite=True, crs=meta.crs)
        if "gpkg" in p.formats:
            self.gpkg = GeoPackageWriter(
                p.paths.staged(f"{p.stem}.gpkg"),
                crs=meta.crs,
                layer=LAYER,
                geometry_type="MULTIPOLYGON",
                overwrite=True,
            )
            self.gpkg.define({"id": "", "class": "", "area_m2": 0.0, "confidence": 0.0})

    def add(self, footprints: list[tuple]) -> None:
        from vimscope.writers.geojson import qupath_feature

        if self.geojson is not None:
            features = []
            for value, shape, props in footprints:
                c = self.classes[value]
                area = {"Area m^2": props["area_m2"]}
                features.append(
                    qupath_feature(
                        shape,
                        object_type="annotation",
                        name=c.name,
                        color=c.color,
                        measurements=area,
                        id=props["id"],
                        properties=props,
                    )
                )
            self.geojson.add_many(features)
        if self.gpkg is not None:
            for _, shape, props in footprints:  # one declared type: a footprint cut in two by the ROI is one row
                self.gpkg.add(shapely.MultiPolygon(shapely.get_parts(shape)), props)

    def close(self) -> dict[str, Path]:
        out = {}
        if self.geojson is not None:
            out["geojson"] = self.geojson.close()
        if self.gpkg is not None:
            out["gpkg"] = self.gpkg.close()
        return out

    def abort(self) -> None:
        for sink in (self.geojson, self.gpkg):
            if sink is not None:
                sink.abort()
