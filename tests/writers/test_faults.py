"""Faults at the store layer: a full disk, a read-only filesystem or a missing permission stops with one clear
OutputError line naming the kept temporary folder, and nothing appears under the final name."""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest

from vimscope.config import ClassSpec
from vimscope.errors import OutputError
from vimscope.types import Box
from vimscope.writers.atomic import atomic_dir, atomic_write_bytes, commit_path
from vimscope.writers.geojson import GeoJSONWriter, qupath_feature
from vimscope.writers.omezarr import OmeZarrWriter

CLASSES = [ClassSpec("background", [0, 0, 0]), ClassSpec("tumor", [255, 0, 0])]
FAULTS = [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied")]
FAULT_IDS = ["ENOSPC", "EROFS", "EACCES"]


def _fail_store_after(monkeypatch, calls: int, code: int):
    """Make the store's chunk writes (``writers.chunkio._put``) raise ``OSError(code)`` from the ``calls``-th on."""
    from vimscope.writers import chunkio

    original = chunkio._put
    seen = {"n": 0}

    def failing_put(path, data):
        seen["n"] += 1
        if seen["n"] >= calls:
            raise OSError(code, os.strerror(code), str(path))
        return original(path, data)

    monkeypatch.setattr(chunkio, "_put", failing_put)


@pytest.mark.parametrize("code,reason", FAULTS, ids=FAULT_IDS)
def test_store_write_fault_is_one_clear_line(tmp_path, monkeypatch, code, reason):
    final = tmp_path / "slide.ome.zarr"
    w = OmeZarrWriter(final, out_shape=(256, 256), scale_um=0.5, classes=CLASSES, chunk=64, image=False)
    w.write_block("classes", Box(0, 0, 64, 64), np.ones((64, 64), np.uint8))
    w.flush()
    _fail_store_after(monkeypatch, 1, code)
    with pytest.raises(OutputError) as info:  # chunks are written in the background: flush waits and raises
        w.write_block("classes", Box(64, 0, 64, 64), np.ones((64, 64), np.uint8))
        w.flush()
    message = str(info.value)
    assert "\n" not in message and reason in message
    assert str(w.partial_path) in message and "resume" in message
    assert not final.exists() and w.partial_path.is_dir()
    assert info.value.exit_code == 9


def test_fault_during_pyramid_keeps_partial_and_no_final(tmp_path, monkeypatch):
    final = tmp_path / "slide.ome.zarr"
    w = OmeZarrWriter(final, out_shape=(256, 256), scale_um=0.5, classes=CLASSES, chunk=64, image=False)
    w.write_block("classes", Box(0, 0, 256, 256), np.ones((256, 256), np.uint8))
    w.flush()
    _fail_store_after(monkeypatch, 1, errno.ENOSPC)
    with pytest.raises(OutputError, match="no space left"):
        w.finalize()
    assert not final.exists() and w.partial_path.is_dir()


def test_commit_fault_names_the_kept_folder(tmp_path, monkeypatch):
    partial = tmp_path / "out.ome.zarr.partial"
    partial.mkdir()
    (partial / "data").write_bytes(b"x")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match="permission denied.*kept in .*out.ome.zarr.partial"):
        commit_path(partial, tmp_path / "out.ome.zarr")
    assert partial.is_dir() and not (tmp_path / "out.ome.zarr").exists()


def test_atomic_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match="read-only"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_atomic_dir_keeps_partial_on_failure(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(OutputError, match="kept in"):
        with atomic_dir(final) as work:
            (work / "a.txt").write_text("done so far")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not final.exists() and (tmp_path / "run.partial" / "a.txt").exists()
    with atomic_dir(final, resume=True) as work:
        assert (work / "a.txt").exists()
    assert (final / "a.txt").exists() and not (tmp_path / "run.partial").exists()


def test_geojson_write_fault(tmp_path):
    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    w = GeoJSONWriter(tmp_path / "a.geojson")
    w.add(qupath_feature(__import__("shapely").box(0, 0, 1, 1)))
    w._file.close()
    w._file = FullDisk()
    with pytest.raises(OutputError, match="no space left.*a.geojson.partial"):
        w.add(qupath_feature(__import__("shapely").box(1, 0, 2, 1)))
    assert not (tmp_path / "a.geojson").exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and mount permission; skipped with the reason otherwise)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_real_full_disk_on_a_small_tmpfs(small_tmpfs):
    final = small_tmpfs / "slide.ome.zarr"
    rng = np.random.default_rng(0)
    w = OmeZarrWriter(
        final, out_shape=(1024, 1024), scale_um=0.5, classes=CLASSES, chunk=256, image=False, probabilities=3
    )
    with pytest.raises(OutputError) as info:
        for y in range(0, 1024, 256):  # 3 MiB of incompressible probabilities into 1 MiB
            block = rng.integers(0, 256, (256, 1024, 3), dtype=np.uint8)
            w.write_block("probabilities", Box(0, y, 1024, 256), block)
        w.flush()
    message = str(info.value)
    assert "no space left" in message and str(w.partial_path) in message and "\n" not in message
    assert not final.exists() and w.partial_path.is_dir()
