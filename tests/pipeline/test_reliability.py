"""Faults around a run: no output under a final name before the slide is complete, output folders that cannot
be written, tiles larger than the image or than the memory, damaged tiles with ``--strict``."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pytest

from tests.pipeline.test_region import DamagingReader
from vimscope.cli.main import main
from vimscope.errors import ConfigError, DamagedTileError, OutputError
from vimscope.pipeline import PipelineConfig, run
from vimscope.types import Box

SETTINGS = dict(
    model="vim_test_pointwise",
    device="cpu",
    tile=128,
    halo=16,
    chunk=128,
    tissue=False,
    outputs=["classes", "geojson", "preview", "summary"],
    formats=["ome-zarr", "ome-tiff"],
    workers=1,
)
STEM = "small-700x900"


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_failure_while_finishing_leaves_no_final_name_then_a_rerun_completes(small_slide, tmp_path, monkeypatch):
    from vimscope.pipeline import exports

    def full_disk(run, fmt):
        raise OutputError(f"cannot write {fmt}: no space left on the device")

    monkeypatch.setattr(exports, "raster_format", full_disk)  # after GeoJSON and before preview and summary
    with pytest.raises(OutputError):
        run(small_slide, PipelineConfig.load(**SETTINGS), out=tmp_path)
    assert _names(tmp_path) == {f"{STEM}.ome.zarr.partial"}  # the GeoJSON is written, but only in staging
    assert (tmp_path / f"{STEM}.ome.zarr.partial" / ".vimscope_outputs" / f"{STEM}.geojson").is_file()

    monkeypatch.undo()
    result = run(small_slide, PipelineConfig.load(**SETTINGS), out=tmp_path)
    finals = {f"{STEM}{s}" for s in (".ome.zarr", ".geojson", ".preview.png", ".summary.json", ".classes.ome.tif")}
    assert _names(tmp_path) == finals
    assert "resumed" in " ".join(result.notes)  # every band was done: the rerun went straight to finishing
    assert {Path(p).name for p in result.summary["outputs"].values()} == finals
    assert all(Path(p).exists() for p in result.paths.values())


def test_a_kill_right_after_the_store_is_renamed_is_finished_by_the_next_run(small_slide, tmp_path, monkeypatch):
    from vimscope.pipeline import finish

    def killed(paths, staged):
        raise KeyboardInterrupt  # the store has its final name, its outputs are still inside it

    monkeypatch.setattr(finish, "publish_staged", killed)
    with pytest.raises(KeyboardInterrupt):
        run(small_slide, PipelineConfig.load(**SETTINGS), out=tmp_path)
    assert _names(tmp_path) == {f"{STEM}.ome.zarr"}
    monkeypatch.undo()
    result = run(small_slide, PipelineConfig.load(**SETTINGS), out=tmp_path)
    assert result.skipped and "same settings" in result.report
    assert f"{STEM}.geojson" in _names(tmp_path) and f"{STEM}.summary.json" in _names(tmp_path)
    assert not (tmp_path / f"{STEM}.ome.zarr" / ".vimscope_outputs").exists()
    assert result.summary["model"]["name"] == "vim_test_pointwise"


def test_an_output_folder_below_a_file_is_one_line_and_exit_9(small_slide, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["segment", str(small_slide), "--model", "vim_test_pointwise", "--device", "cpu", "-q"]
    assert main([*args, "-o", str(blocker / "sub")]) == 9
    err = capsys.readouterr().err.strip()
    assert err.startswith("vimscope: error: cannot write") and "\n" not in err and "internal" not in err
    assert main([*args, "-o", str(blocker)]) == 2  # the option itself names a file: a usage error
    assert "is a file" in capsys.readouterr().err
    with pytest.raises(OutputError, match="not a folder"):  # the same through the API
        run(small_slide, PipelineConfig.load(**SETTINGS), out=blocker)


def test_a_read_only_filesystem_is_one_line_and_exit_9(small_slide, tmp_path, capsys, monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if self.is_relative_to(tmp_path / "ro"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    args = ["segment", str(small_slide), "--model", "vim_test_pointwise", "--device", "cpu", "-q"]
    assert main([*args, "-o", str(tmp_path / "ro" / "sub")]) == 9
    err = capsys.readouterr().err.strip()
    assert "the filesystem is read-only" in err and "\n" not in err


def test_a_tile_larger_than_the_image_is_clamped(small_slide, tmp_path):
    result = run(small_slide, PipelineConfig.load(**{**SETTINGS, "tile": 8192, "formats": ["ome-zarr"]}), out=tmp_path)
    from vimscope.models import load_spec

    m = max(1, load_spec("vim_test_pointwise").size_multiple)
    h, w = result.summary["out_shape"]
    assert result.summary["tile"] == math.ceil((max(h, w) + 2 * 16) / m) * m < 8192
    assert result.summary["tiles"]["planned"] == 1
    assert any("larger than the" in n for n in result.notes)


def test_the_batch_is_lowered_or_the_run_refused_when_memory_is_short(monkeypatch):
    from vimscope.pipeline import budget
    from vimscope.pipeline.model import load_model

    config = PipelineConfig.load(**{**SETTINGS, "batch_size": 8})
    lm = load_model(config)
    found = {"logits": 3}
    need = budget.estimate_memory(lm, 2048, config, 4, True, False)
    one = sum(need.total(1))
    assert need.device_per_tile > 0 and need.host_per_tile >= (config.prefetch + 2) * 3 * 2048 * 2048
    notes: list[str] = []
    monkeypatch.setattr(budget, "available_host", lambda: 3.5 * one / budget.HEADROOM)
    lowered = budget.fit_batch(config, lm, found, 2048, notes)
    assert lowered.batch_size == 3 and "batch lowered from 8 to 3" in notes[0]
    monkeypatch.setattr(budget, "available_host", lambda: 0.5 * one / budget.HEADROOM)
    with pytest.raises(ConfigError, match="use a smaller --tile"):
        budget.fit_batch(config, lm, found, 2048, [])
    assert budget.fit_batch(config, lm, found, 256, []) is config  # small batches are not measured


def test_strict_fails_the_slide_at_a_damaged_tile_and_publishes_nothing(small_slide, tmp_path):
    reader = DamagingReader(small_slide, Box(400, 300, 4, 4))
    with pytest.raises(DamagedTileError, match="--strict"):
        run(reader, PipelineConfig.load(**{**SETTINGS, "strict": True}), out=tmp_path)
    assert _names(tmp_path) == {f"{STEM}.ome.zarr.partial"}
    result = run(reader, PipelineConfig.load(**{**SETTINGS, "formats": ["ome-zarr"]}), out=tmp_path / "lenient")
    assert result.summary["damaged_tiles"]["count"] >= 1


def test_strict_is_a_segment_and_batch_option(small_slide, tmp_path):
    from vimscope.cli.batch import batch_config
    from vimscope.cli.segment import segment

    assert "strict" in {p.name for p in segment.params}
    assert batch_config(features_mode=False, reader_threads=None, strict=True).strict is True
    assert batch_config(features_mode=False, reader_threads=None, strict=False).strict is False
    summary = json.dumps(PipelineConfig.load(strict=True).to_dict())
    assert '"strict": true' in summary


def test_an_existing_folder_that_takes_no_file_is_one_line_and_exit_9(small_slide, tmp_path, capsys, monkeypatch):
    real_touch = Path.touch

    def read_only(self, *a, **k):
        if self.parent == tmp_path / "ro":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_touch(self, *a, **k)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(Path, "touch", read_only)
    args = ["segment", str(small_slide), "--model", "vim_test_pointwise", "--device", "cpu", "-q"]
    assert main([*args, "-o", str(tmp_path / "ro")]) == 9
    assert "the filesystem is read-only" in capsys.readouterr().err
    assert list((tmp_path / "ro").iterdir()) == []


def _mount_tmpfs(path: Path, options: str) -> bool:
    """Mount a tmpfs at ``path`` (root only, and only where the kernel lets a container do it)."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def _unmount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_real_filesystem_fault_is_one_line_and_nothing_final(small_slide, tmp_path, capsys, monkeypatch, fault):
    """On a real tmpfs where the test may mount one (read-only, or 256 KB that the outputs overflow); else the
    same errors simulated at the filesystem calls."""
    mnt = tmp_path / "mnt"
    options = "ro,size=1m" if fault == "read-only" else "size=256k"
    mounted = _mount_tmpfs(mnt, options)
    if not mounted:
        reason = errno.EROFS if fault == "read-only" else errno.ENOSPC
        real_open = open

        def failing_open(file, mode="r", *a, **k):
            if "w" in str(mode) and str(file).startswith(str(mnt)):
                raise OSError(reason, os.strerror(reason), str(file))
            return real_open(file, mode, *a, **k)

        import builtins

        monkeypatch.setattr(builtins, "open", failing_open)
        if fault == "read-only":
            monkeypatch.setattr(Path, "touch", lambda self, *a, **k: failing_open(self, "w"))
    try:
        out = mnt / "sub" if fault == "read-only" else mnt
        args = ["segment", str(small_slide), "--model", "vim_test_pointwise", "--device", "cpu", "-q"]
        assert main([*args, "--no-tissue", "--tile", "128", "-o", str(out)]) == 9
        err = capsys.readouterr().err.strip()
        line = err.splitlines()[-1]  # before it: the note that the test model is untrained
        assert line.startswith("vimscope: error: cannot write") and "Traceback" not in err
        assert ("read-only" in line) if fault == "read-only" else ("no space left" in line), line
        outside_partial = [
            p
            for p in mnt.rglob("*")
            if p.is_file() and not any(x.endswith(".partial") for x in p.relative_to(mnt).parts)
        ]
        assert not outside_partial
    finally:
        if mounted:
            _unmount(mnt)
