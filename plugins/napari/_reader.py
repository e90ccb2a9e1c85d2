"""napari reader: any slide or raster ``vimscope.io`` opens, as a lazy multiscale image; vimscope outputs as layers.

``napari_get_reader`` is napari's cheap check: it looks at the name and the first bytes, opens the header once
(``open_slide`` reads no pixels) and returns ``None`` for anything it cannot read. It never raises.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".bif",
    ".svslide",
    ".dcm",
    ".qptiff",
    ".btf",
    ".tf2",
    ".tf8",
    ".png",
    ".jpg",
    ".jpeg",
    ".zarr",
)
ZARR_MARKERS = (".zattrs", ".zgroup", "zarr.json")
DICOM_PROBE_FILES = 16  # how many files of a folder to sniff for the DICOM magic


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_files(folder: Path) -> list[Path]:
    files = []
    for i, child in enumerate(sorted(folder.iterdir())):
        if i >= 4 * DICOM_PROBE_FILES:
            break
        if child.is_file() and (child.suffix.lower() == ".dcm" or _is_dicom_file(child)):
            files.append(child)
            if len(files) >= DICOM_PROBE_FILES:
                break
    return files


def slide_candidates(path: Path) -> list[Path]:
    """The paths to try with ``open_slide`` for what the user dropped (a file, a .zarr, DICOM or MRXS folder)."""
    if path.is_dir():
        if path.suffix.lower() == ".zarr" or any((path / m).exists() for m in ZARR_MARKERS):
            return [path]
        if (path / "Slidedat.ini").is_file():  # MRXS data folder: the slide is the .mrxs file beside it
            return [p for p in (path.with_suffix(".mrxs"), path.parent / f"{path.name}.mrxs") if p.is_file()][:1]
        dicom = _dicom_files(path)
        return [path, dicom[0]] if dicom else []
    if path.is_file():
        name = path.name.lower()
        if name.endswith(SLIDE_SUFFIXES) or _is_dicom_file(path):
            return [path]
    return []


def _opens(path: Path) -> bool:
    from vimscope.io import open_slide

    reader = open_slide(path)
    try:
        return reader.meta.level_count > 0
    finally:
        reader.close()


def napari_get_reader(path):
    """Return a reader function for ``path`` if vimscope can read it, else None (never raises)."""
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        path = Path(path)
        from vimscope_napari._outputs import is_vimscope_output

        if is_vimscope_output(path):
            return read_output
        for candidate in slide_candidates(path):
            try:
                if _opens(candidate):
                    return _SlideReaderFunction(candidate)
            except Exception as e:  # noqa: BLE001 - any failure means "not ours"
                log.debug("vimscope cannot open %s: %s", candidate, e)
    except Exception as e:  # noqa: BLE001
        log.debug("vimscope reader check failed for %s: %s", path, e)
    return None


class _SlideReaderFunction:
    """The reader napari calls; remembers which candidate opened (a MRXS folder reads its .mrxs file)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, _path) -> list:
        return read_slide(self.path)


def read_slide(path: str | Path, mpp: float | None = None) -> list:
    """LayerData for one slide: a multiscale image layer of dask arrays in µm (or map units)."""
    from vimscope_napari._layers import slide_layers

    from vimscope.io import open_slide

    reader = open_slide(path, mpp=mpp)  # stays open: the dask arrays read through it
    return slide_layers(reader)


def read_output(path) -> list:
    """LayerData for a vimscope output folder: image, class labels, instance labels, probabilities, features."""
    from vimscope_napari._outputs import output_layers

    if isinstance(path, (list, tuple)):
        path = path[0]
    return output_layers(path)
