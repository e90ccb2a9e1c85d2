"""Outputs appear whole or not at all: files are written beside their final name and renamed when complete.

A failing write (full disk, read-only filesystem, missing permission) becomes one ``OutputError`` line that names
the temporary folder kept for resume, never a traceback; nothing is left under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from vimscope.errors import OutputError

PARTIAL_SUFFIX = ".partial"

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the filesystem",
}


def partial_path(final_path: str | os.PathLike) -> Path:
    """Where an output is built before it is renamed to ``final_path``."""
    final_path = Path(final_path)
    return final_path.with_name(final_path.name + PARTIAL_SUFFIX)


def output_error(exc: OSError, target: str | os.PathLike, kept: str | os.PathLike | None = None) -> OutputError:
    """One clear line for an ``OSError`` met while writing ``target``; says where the work so far is kept."""
    reason = _REASONS.get(exc.errno) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    line = f"cannot write {target}: {reason}{where}"
    if kept is not None and Path(kept).exists():
        line += f"; work so far is kept in {kept} (fix the cause and rerun to resume)"
    else:
        line += "; nothing was written under the final name"
    return OutputError(line)


@contextlib.contextmanager
def output_errors(target: str | os.PathLike, kept: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn any ``OSError`` raised inside the block into an ``OutputError`` about ``target``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(exc, target, kept) from exc


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_atomic_temp(name: str) -> bool:
    """Is ``name`` the temporary file of an ``atomic_write_bytes`` (left behind when its process was killed)?"""
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # is_atomic_temp knows this pattern
    try:
        with output_errors(path):
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data, *, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj):
    """numpy scalars and arrays, paths and sets, as plain JSON."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "to_list"):
        return obj.to_list()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a file or folder if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit_path(partial: str | os.PathLike, final: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Rename a finished ``partial`` file or folder to ``final``; an existing ``final`` needs ``overwrite``."""
    partial, final = Path(partial), Path(final)
    with output_errors(final, partial):
        if final.exists() or final.is_symlink():
            if not overwrite:
                raise OutputError(
                    f"{final} already exists (pass --overwrite to replace it); the new output is kept in {partial}"
                )
            # rename the old output aside first so a failure never leaves neither
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(partial, final)
            remove_tree(old)
        else:
            os.replace(partial, final)
        _fsync_dir(final.parent)
    return final


@contextlib.contextmanager
def atomic_dir(final_path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> Iterator[Path]:
    """Build a folder under ``<final>.partial`` and rename it to ``final`` when the block succeeds.

    On failure the partial folder is kept (for resume) and an ``OSError`` becomes an ``OutputError`` naming it.
    ``resume`` keeps a partial folder left by an earlier run instead of starting a fresh one.
    """
    final = Path(final_path)
    partial = partial_path(final)
    with output_errors(final, partial):
        if partial.exists() and not resume:
            remove_tree(partial)
        partial.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except OSError as exc:
        raise output_error(exc, final, partial) from exc
    commit_path(partial, final, overwrite=overwrite)
