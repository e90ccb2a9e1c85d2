"""Bad input: one clear stderr line, a distinct non-zero exit code, never a traceback (``--debug`` shows it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, shared_path
from tests.io.conftest import demo_path
from vimscope import errors
from vimscope.cli.main import main
from vimscope.io import open_slide


def _truncated(tmp_path, fraction):
    path = tmp_path / f"cut-{fraction}.svs"
    data = demo_path().read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _cases(tmp_path):
    """(name, argv after 'vimscope', error class, words the message must contain)."""
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "empty.svs").write_bytes(b"")
    (tmp_path / "notes.svs").write_text("These are my notes about the slide, not the slide.\n")
    (tmp_path / "picture.gif").write_bytes(b"GIF89a" + bytes(200))
    tcga = str(shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs"))
    demo = str(demo_path())
    return [
        ("missing path", ["info", str(tmp_path / "nope.svs")], errors.SlideNotFoundError, "no such file"),
        ("folder without a slide", ["info", str(tmp_path / "empty-folder")], errors.NoSlideInFolderError, "folder"),
        ("zero-byte file", ["info", str(tmp_path / "empty.svs")], errors.EmptyFileError, "empty"),
        ("truncated file", ["info", str(_truncated(tmp_path, 0.6))], errors.CorruptSlideError, "truncated"),
        ("text named .svs", ["info", str(tmp_path / "notes.svs")], errors.NotASlideError, "text"),
        ("unsupported format", ["info", str(tmp_path / "picture.gif")], errors.UnsupportedFormatError, "GIF"),
        ("region outside", ["info", demo, "--region", "2000,2900,500,500"], errors.RegionError, "outside"),
        ("needs physical units", ["info", tcga, "--require-mpp"], errors.MissingPixelSizeError, "--mpp"),
    ]


def test_every_case_has_its_own_exit_code(tmp_path):
    codes = [cls.exit_code for _, _, cls, _ in _cases(tmp_path)]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes


@pytest.mark.parametrize(
    "index",
    range(8),
    ids=[
        "missing",
        "folder-without-slide",
        "zero-byte",
        "truncated",
        "text-named-svs",
        "unsupported",
        "region-outside",
        "no-physical-units",
    ],
)
def test_bad_input_gives_one_line_and_its_code(tmp_path, capsys, index):
    name, argv, cls, words = _cases(tmp_path)[index]
    rc = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == cls.exit_code, (name, captured.err)
    assert len(lines) == 1 and lines[0].startswith("vimscope: error: "), captured.err
    assert words in lines[0] and "Traceback" not in captured.err
    assert captured.out == ""


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(errors.SlideNotFoundError):
        main(["--debug", "info", str(tmp_path / "nope.svs")])


def test_api_raises_the_same_errors(tmp_path):
    from vimscope.tissue import mask
    from vimscope.types import Box

    with pytest.raises(errors.SlideNotFoundError):
        open_slide(tmp_path / "nope.tif")
    with pytest.raises(errors.CorruptSlideError, match="truncated"):
        open_slide(_truncated(tmp_path, 0.9))  # data intact, but the last directories are cut off
    reader = open_slide(shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs"))
    with pytest.raises(errors.MissingPixelSizeError, match="--mpp"):
        mask(reader)
    with pytest.raises(errors.RegionError, match="outside"):
        reader.read(Box(4400, 0, 100, 100))
    with pytest.raises(errors.ConfigError, match="--mpp"):
        open_slide(demo_path(), mpp=-1)


@pytest.mark.parametrize("case", [0, 4], ids=["missing", "text-named-svs"])
def test_bad_input_in_a_subprocess(tmp_path, case):
    name, argv, cls, words = _cases(tmp_path)[case]
    out = subprocess.run(
        [sys.executable, "-m", "vimscope", *argv], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == cls.exit_code, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and words in out.stderr


def test_several_paths_report_each_failure_and_go_on(tmp_path, capsys):
    import json

    demo = str(demo_path())
    rc = main(["info", demo, str(tmp_path / "nope.svs"), "--json"])
    captured = capsys.readouterr()
    assert rc == errors.SlideNotFoundError.exit_code
    results = json.loads(captured.out)
    assert results[0]["level_dimensions"][0] == [2220, 2967]
    assert results[1]["exit_code"] == 3 and "no such file" in results[1]["error"]
    assert captured.err.count("vimscope: error:") == 1
