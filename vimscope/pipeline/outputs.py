"""Where a run's outputs go, and how they reach their final names only once the slide is complete.

The OME-Zarr store is built under ``<stem>.ome.zarr.partial``. Every other output (GeoJSON, preview, summary,
detections, tables, other raster formats) is written into a staging folder inside it
(``<stem>.ome.zarr.partial/.vimscope_outputs/``). At the end the store is renamed first: its final name is the
mark that the slide is complete. Then the staged files move beside it. A kill between the two leaves them inside
the finished store, where ``settle_staged`` (run before anything else by the next run on that folder) finds
them and finishes the move. So after a kill or a full disk no output stands under its final name beside a
partial store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vimscope.writers.atomic import PARTIAL_SUFFIX, is_atomic_temp, output_errors, partial_path, remove_tree

STAGING = ".vimscope_outputs"


def slide_stem(path: str | Path) -> str:
    """The name a slide's outputs share: the file name without its (double) suffix."""
    name = Path(str(path).rstrip("/")).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


@dataclass(frozen=True)
class OutputPaths:
    """The final paths of one slide's outputs in ``folder``, and where each is staged until the slide is done."""

    folder: Path
    stem: str

    @property
    def zarr(self) -> Path:
        return self.folder / f"{self.stem}.ome.zarr"

    @property
    def staging(self) -> Path:
        return partial_path(self.zarr) / STAGING

    def final(self, name: str) -> Path:
        """The final path of output ``name`` (summary, preview, geojson) or of a file name."""
        known = {"summary": ".summary.json", "preview": ".preview.png", "geojson": ".geojson"}
        if name == "zarr":
            return self.zarr
        return self.folder / (f"{self.stem}{known[name]}" if name in known else name)

    def staged(self, name: str) -> Path:
        """Where output ``name`` is written during the run (inside the partial store)."""
        return self.staging / self.final(name).name

    def as_dict(self) -> dict[str, Path]:
        return {k: self.final(k) for k in ("zarr", "summary", "preview", "geojson")}


def output_paths(out: Path, stem: str) -> dict[str, Path]:
    """The final paths of a slide's main outputs in ``out`` (``zarr``, ``summary``, ``preview``, ``geojson``)."""
    return OutputPaths(Path(out), stem).as_dict()


def ensure_folder(folder: Path) -> None:
    """Create the output folder and check it takes a file; a file in the way, a read-only filesystem or a missing
    permission is an ``OutputError`` (one line, exit 9) before any work."""
    folder = Path(folder)
    with output_errors(folder):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(20, "it is a file, not a folder", str(folder))
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vimscope-write-test-{os.getpid()}"  # the filesystem's own answer (read-only, full...)
        probe.touch()
        probe.unlink()


def publish_staged(paths: OutputPaths, staged: dict[str, Path]) -> dict[str, Path]:
    """After the store's rename: move every staged file beside it; returns the final paths by output name."""
    settle_staged(paths.zarr)
    return {key: paths.folder / Path(path).name for key, path in staged.items()}


def settle_staged(store: Path) -> list[Path]:
    """Move the staged outputs left inside a finished store (the run was killed right after its rename) beside
    it; returns their final paths. Does nothing when there are none."""
    inside = Path(store) / STAGING
    if not inside.is_dir():
        return []
    moved = []
    with output_errors(store.parent):
        for f in sorted(inside.iterdir()):
            if f.name.endswith(PARTIAL_SUFFIX) or is_atomic_temp(f.name):
                continue  # a writer's unfinished file from an attempt that was killed
            target = store.parent / f.name
            os.replace(f, target)
            moved.append(target)
        remove_tree(inside)
    return moved
