"""What a batch runs: the slides of a folder, a text list or a CSV/TSV manifest, each with its own overrides.

A malformed manifest (no ``path`` column, an unknown column, a repeated output name) stops the batch before
anything runs. A bad value in one row (``mpp = abc``, an unreadable ROI) does not: that slide carries a
``problem`` and is recorded as failed with it, like a corrupt slide, and the others run.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vimscope.errors import ConfigError, SlideNotFoundError
from vimscope.types import Box

# Names a folder scan picks up when no --pattern is given (matched case-insensitively against file names).
DEFAULT_PATTERNS = (
    "*.svs",
    "*.ndpi",
    "*.mrxs",
    "*.scn",
    "*.bif",
    "*.vms",
    "*.vmu",
    "*.tif",
    "*.tiff",
    "*.btf",
    "*.qptiff",
    "*.zarr",
    "*.jp2",
    "*.png",
    "*.jpg",
    "*.jpeg",
)
MULTI_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr", ".ome.btf")
LIST_SUFFIXES = (".txt", ".lst", ".list")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
# manifest column -> accepted header spellings
COLUMNS = {
    "path": ("path", "slide", "file", "filename"),
    "mpp": ("mpp",),
    "target_mpp": ("target_mpp", "target-mpp"),
    "roi": ("roi", "region"),
    "name": ("name", "output", "output_name"),
}
RESERVED_NAMES = {"_batch", "report.json", "report.md"}


@dataclass(frozen=True)
class SlideJob:
    """One slide of a batch: where it is, the output name, and the settings its manifest row overrides."""

    path: str  # absolute
    name: str  # output name: a folder under OUT and the key of its state file
    mpp: float | None = None  # level-0 µm/px override (the slide's own metadata is wrong or missing)
    target_mpp: float | None = None
    roi: tuple[Box, ...] | str | None = None  # level-0 boxes, or a GeoJSON file (QuPath export) of the region
    problem: str | None = None  # a bad manifest value: the slide is recorded as failed with this reason
    row: int | None = None  # line of the list / manifest, for messages
    overrides: dict = field(default_factory=dict, compare=False)  # the raw overriding values, for the state file


def read_inputs(
    source: str | Path, *, patterns: list[str] | tuple[str, ...] | None = None, exclude: Path | None = None
) -> list[SlideJob]:
    """The jobs of ``source``: a folder (scanned recursively), a CSV/TSV manifest, a text list or one slide."""
    source = Path(source).expanduser()
    if not source.exists():
        raise SlideNotFoundError(f"batch input not found: {source}")
    if source.is_dir() and not _is_slide_dir(source):
        jobs = scan_folder(source, patterns=patterns or DEFAULT_PATTERNS, exclude=exclude)
        if not jobs:
            shown = ", ".join(patterns or DEFAULT_PATTERNS)
            raise ConfigError(f"no slides in {source} match {shown} (use --pattern)")
        return jobs
    suffix = source.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return read_manifest(source, delimiter=TABLE_SUFFIXES[suffix])
    if suffix in LIST_SUFFIXES:
        return read_list(source)
    return _named([_job(source.resolve(), row=None)])  # a single slide


def scan_folder(folder: Path, *, patterns, exclude: Path | None = None) -> list[SlideJob]:
    """Every file (or ``*.zarr`` folder) under ``folder`` whose name or relative path matches a pattern."""
    folder = folder.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    pats = [p.lower() for p in patterns]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            if d.startswith(".") or (exclude is not None and full == exclude):
                continue
            if _matches(full.relative_to(folder), pats) and _is_slide_dir(full):
                found.append(full)  # a zarr store is one slide: do not descend
            else:
                keep.append(d)
        dirnames[:] = keep
        found.extend(
            here / f
            for f in sorted(filenames)
            if not f.startswith(".") and _matches((here / f).relative_to(folder), pats)
        )
    found.sort()
    return _named([_job(p, row=None) for p in found], base=folder)


def read_list(path: Path) -> list[SlideJob]:
    """A text file with one slide path per line; lines starting with ``#`` are comments; relative paths are
    relative to the list's folder."""
    jobs = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            jobs.append(_job(_resolve(text, path.parent), row=lineno))
    if not jobs:
        raise ConfigError(f"{path}: the list names no slides")
    return _named(jobs)


def read_manifest(path: Path, *, delimiter: str) -> list[SlideJob]:
    """A CSV/TSV table with a header; ``path`` is required, ``mpp``, ``target_mpp``, ``roi``, ``name`` optional."""
    rows = list(csv.reader(_read_text(path).splitlines(), delimiter=delimiter))
    rows = [
        (i, r) for i, r in enumerate(rows, start=1) if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")
    ]
    if not rows:
        raise ConfigError(f"{path}: the manifest is empty")
    header_line, header = rows[0]
    columns = [_column(h, path) for h in header]
    if "path" not in columns:
        raise ConfigError(f"{path}: the manifest needs a 'path' column (header: {', '.join(header)})")
    jobs = []
    for lineno, row in rows[1:]:
        if len(row) > len(columns):
            raise ConfigError(f"{path}:{lineno}: {len(row)} cells for {len(columns)} columns")
        cells = {c: v.strip() for c, v in zip(columns, row) if v.strip()}
        if "path" not in cells:
            raise ConfigError(f"{path}:{lineno}: the path cell is empty")
        jobs.append(_job(_resolve(cells.pop("path"), path.parent), row=lineno, cells=cells, base=path.parent))
    if not jobs:
        raise ConfigError(f"{path}: the manifest names no slides")
    names = [j.name for j in jobs if j.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: output name {dup[0]!r} is given to more than one row")
    return _named(jobs)


def output_name(path: str | Path) -> str:
    """The default output name of a slide: its file name without the format suffix, made filesystem-safe."""
    name = Path(path).name
    lower = name.lower()
    for suffix in MULTI_SUFFIXES:
        if lower.endswith(suffix):
            return safe_name(name[: -len(suffix)])
    return safe_name(Path(name).stem if Path(name).suffix else name)


def safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "slide"
    return name + "_" if name in RESERVED_NAMES else name


def parse_roi(text: str, base: Path | None = None) -> tuple[Box, ...] | str:
    """``"x,y,w,h"`` boxes (level-0 pixels) separated by ``;``, or a GeoJSON file holding the region."""
    parts = [p.strip() for p in text.split(";") if p.strip()]
    boxes = []
    for part in parts:
        numbers = re.split(r"[,\s]+", part)
        if len(numbers) == 4 and all(re.fullmatch(r"-?\d+", n) for n in numbers):
            box = Box(*(int(n) for n in numbers))
            if box.w <= 0 or box.h <= 0 or box.x < 0 or box.y < 0:
                raise ValueError(f"roi box {part!r} must have x, y >= 0 and w, h > 0")
            boxes.append(box)
        elif len(parts) == 1:
            file = _resolve(part, base or Path.cwd())
            if not Path(file).is_file():
                raise ValueError(f"roi {part!r} is neither 'x,y,w,h' nor an existing GeoJSON file")
            return file
        else:
            raise ValueError(f"roi part {part!r} is not 'x,y,w,h'")
    return tuple(boxes)


def _job(path: Path | str, *, row: int | None, cells: dict | None = None, base: Path | None = None) -> SlideJob:
    cells = dict(cells or {})
    problem = None
    values: dict = {}
    for key in ("mpp", "target_mpp"):
        if key in cells:
            try:
                values[key] = float(cells[key])
                if not values[key] > 0:
                    raise ValueError
            except ValueError:
                problem = problem or f"manifest row {row}: {key} must be a positive number, got {cells[key]!r}"
                values.pop(key, None)
    if "roi" in cells:
        try:
            values["roi"] = parse_roi(cells["roi"], base)
        except ValueError as e:
            problem = problem or f"manifest row {row}: {e}"
    name = safe_name(cells["name"]) if "name" in cells else ""
    return SlideJob(path=str(path), name=name, problem=problem, row=row, overrides=cells, **values)


def _named(jobs: list[SlideJob], base: Path | None = None) -> list[SlideJob]:
    """Give every unnamed job its file stem; where stems collide, use the path below the common folder."""
    seen_paths = set()
    unique = []
    for job in jobs:
        key = (job.path, job.name, tuple(sorted(job.overrides.items())))
        if key not in seen_paths:  # the same line twice is one slide
            seen_paths.add(key)
            unique.append(job)
    jobs = unique
    explicit = {j.name for j in jobs if j.name}
    stems = [output_name(j.path) for j in jobs]
    common = base
    if common is None and jobs:
        common = Path(os.path.commonpath([str(Path(j.path).parent) for j in jobs]))
    out = []
    for job, stem in zip(jobs, stems):
        if job.name:
            out.append(job)
            continue
        name = stem
        if stems.count(stem) > 1 or stem in explicit:
            rel = (
                Path(job.path).relative_to(common)
                if common and Path(job.path).is_relative_to(common)
                else Path(job.path)
            )
            name = safe_name("__".join([*rel.parent.parts, output_name(rel.name)]).lstrip("/"))
        out.append(_replace_name(job, name))
    names = [j.name for j in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two slides would write the same output {dup[0]!r}; give them names in a manifest")
    return out


def _replace_name(job: SlideJob, name: str) -> SlideJob:
    from dataclasses import replace

    return replace(job, name=name)


def _column(header: str, path: Path) -> str:
    h = header.strip().lower()
    for key, spellings in COLUMNS.items():
        if h in spellings:
            return key
    raise ConfigError(f"{path}: unknown manifest column {header.strip()!r} (known: {', '.join(COLUMNS)})")


def _matches(rel: Path, patterns: list[str]) -> bool:
    name, posix = rel.name.lower(), rel.as_posix().lower()
    return any(fnmatch.fnmatchcase(posix if "/" in p else name, p) for p in patterns)


def _is_slide_dir(path: Path) -> bool:
    """A zarr store (or another folder-shaped slide) is one input, not a folder to scan."""
    return path.suffix.lower() == ".zarr" or (path / ".zattrs").exists() or (path / "zarr.json").exists()


def _resolve(text: str, base: Path) -> str:
    p = Path(text).expanduser()
    return str((p if p.is_absolute() else base / p).resolve())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text list or manifest (not UTF-8 text)") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
