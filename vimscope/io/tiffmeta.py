"""Pixel size, georeference, band names and associated images from the tags of a TIFF, per flavour.

GeoTIFF (tags for the affine transform, EPSG code through pyproj), OME-TIFF (OME-XML), QPTIFF (PerkinElmer XML),
Aperio SVS descriptions, and plain resolution tags. Each helper returns what it finds or None.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np

OME_UNITS_TO_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
PLACEHOLDER_DPI = 1200  # an inch-based resolution of at most this many dpi is a screen/print default, not a scan


def resolution_mpp(page) -> float | None:
    """µm per pixel from XResolution/YResolution, ignoring unitless and typical screen/print resolutions."""
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    unit = int(tags["ResolutionUnit"].value)
    values = []
    for name in ("XResolution", "YResolution"):
        if name in tags:
            num, den = tags[name].value
            if num and den:
                values.append(num / den)
    if not values or unit not in (2, 3):
        return None
    per_unit = sum(values) / len(values)
    if unit == 2 and per_unit <= PLACEHOLDER_DPI:
        return None
    mpp = (25400.0 if unit == 2 else 10000.0) / per_unit
    return mpp if math.isfinite(mpp) and mpp > 0 else None


def _strip_ns(root: ET.Element) -> None:
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]


def ome_info(xml: str, series: int = 0) -> dict:
    """mpp, channel names and objective magnification of one OME-XML Image."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    _strip_ns(root)
    images = root.findall("Image")
    if not images:
        return {}
    image = images[min(series, len(images) - 1)]
    pixels = image.find("Pixels")
    out: dict = {}
    if pixels is not None:
        sizes = []
        for axis in ("X", "Y"):
            value = pixels.get(f"PhysicalSize{axis}")
            unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
            if value is not None and unit in OME_UNITS_TO_UM:
                sizes.append(float(value) * OME_UNITS_TO_UM[unit])
        if sizes and all(s > 0 for s in sizes):
            out["mpp"] = sum(sizes) / len(sizes)
        names = [c.get("Name") for c in pixels.findall("Channel")]
        if names and all(names):
            out["band_names"] = names
    settings = image.find("ObjectiveSettings")
    if settings is not None:
        for obj in root.iter("Objective"):
            if obj.get("ID") == settings.get("ID") and obj.get("NominalMagnification"):
                out["objective_power"] = float(obj.get("NominalMagnification"))
    return out


def qpi_info(pages) -> dict:
    """Channel names, pixel size, objective and associated image types of a PerkinElmer/Akoya QPTIFF."""
    names, associated, out = [], {}, {}
    for index, page in enumerate(pages):
        desc = page.description or ""
        kind = re.search(r"<ImageType>(\w+)</ImageType>", desc)
        kind = kind.group(1) if kind else ""
        if kind == "FullResolution":
            name = re.search(r"^\s*<Name>([^<]*)</Name>", desc, re.M)
            names.append(name.group(1) if name else f"channel {len(names)}")
            if "mpp" not in out:
                px = re.search(r"<PixelSizeMicrons>([\d.eE+-]+)</PixelSizeMicrons>", desc)
                if px:
                    out["mpp"] = float(px.group(1))
                obj = re.search(r"<Objective>\s*([\d.]+)\s*x?\s*</Objective>", desc, re.I)
                if obj:
                    out["objective_power"] = float(obj.group(1))
        elif kind in ("Thumbnail", "Overview", "Label"):
            associated[kind.lower()] = index
    if names:
        out["band_names"] = names
    out["associated_pages"] = associated
    return out


def svs_info(description: str) -> dict:
    """mpp and objective power from an Aperio ImageDescription (``|MPP = 0.499|AppMag = 20``)."""
    out = {}
    for key, field in (("MPP", "mpp"), ("AppMag", "objective_power")):
        m = re.search(rf"\|\s*{key}\s*=\s*([\d.eE+-]+)", description or "")
        if m and float(m.group(1)) > 0:
            out[field] = float(m.group(1))
    return out


def gdal_info(page) -> dict:
    """Nodata value and band descriptions/colour interpretation from GDAL's private TIFF tags."""
    out: dict = {}
    tags = page.tags
    if "GDAL_NODATA" in tags:
        raw = tags["GDAL_NODATA"].value
        raw = raw.decode("ascii", "ignore") if isinstance(raw, bytes) else str(raw)
        try:
            out["nodata"] = float(raw.strip().strip("\x00"))
        except ValueError:
            pass
    if "GDAL_METADATA" in tags:
        try:
            root = ET.fromstring(tags["GDAL_METADATA"].value)
        except ET.ParseError:
            root = None
        if root is not None:
            desc, colors = {}, {}
            for item in root.iter("Item"):
                sample = item.get("sample")
                if sample is None:
                    continue
                if item.get("role") == "description" or item.get("name") == "DESCRIPTION":
                    desc[int(sample)] = (item.text or "").strip()
                elif item.get("role") == "colorinterp" or item.get("name") == "COLORINTERP":
                    colors[int(sample)] = (item.text or "").strip()
            names = desc or colors
            if names:
                out["band_names_by_index"] = names
    return out


def geotiff_info(tif) -> dict:
    """GDAL-style affine transform of level 0 and the CRS (``EPSG:n`` via pyproj) of a GeoTIFF."""
    try:
        geo = tif.geotiff_metadata or {}
    except Exception:
        return {}
    out: dict = {}
    if "ModelTransformation" in geo:
        m = [float(v) for v in np.asarray(geo["ModelTransformation"], np.float64).ravel()]
        if len(m) >= 8:
            out["transform"] = (m[3], m[0], m[1], m[7], m[4], m[5])
    elif "ModelPixelScale" in geo and "ModelTiepoint" in geo:
        sx, sy = float(geo["ModelPixelScale"][0]), float(geo["ModelPixelScale"][1])
        i, j, _, x, y = (float(v) for v in list(geo["ModelTiepoint"])[:5])
        out["transform"] = (x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy)
    if "transform" in out and int(geo.get("GTRasterTypeGeoKey", 1)) == 2:
        # PixelIsPoint: the tiepoint names a pixel centre; GDAL shifts the origin to the pixel corner
        x0, dx, rx, y0, ry, dy = out["transform"]
        out["transform"] = (x0 - 0.5 * dx - 0.5 * rx, dx, rx, y0 - 0.5 * ry - 0.5 * dy, ry, dy)
    code = None
    for key in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
        if key in geo and int(geo[key]) not in (0, 32767):
            code = int(geo[key])
            break
    if code is not None:
        out["crs"] = f"EPSG:{code}"
        try:
            from pyproj import CRS

            crs = CRS.from_epsg(code)
            out["crs"] = ":".join(crs.to_authority() or ("EPSG", str(code)))
            out["crs_name"] = crs.name
            if crs.axis_info:
                out["crs_units"] = crs.axis_info[0].unit_name
        except Exception:  # an EPSG code pyproj does not know: keep the code
            pass
    elif "GTCitationGeoKey" in geo:
        out["crs_name"] = str(geo["GTCitationGeoKey"])
    if "transform" in out:
        _, dx, rx, _, ry, dy = out["transform"]
        out["mpp"] = (math.hypot(dx, ry) + math.hypot(rx, dy)) / 2
    return out
