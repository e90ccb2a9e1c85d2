"""What a batch runs: folders, lists and manifests, with per-row overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vimscope.errors import ConfigError, SlideNotFoundError
from vimscope.runners.manifest import output_name, parse_roi, read_inputs
from vimscope.types import Box


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_scan_is_recursive_and_names_collisions_apart(tmp_path):
    _touch(tmp_path / "a" / "s1.svs")
    _touch(tmp_path / "b" / "s1.svs")
    _touch(tmp_path / "b" / "deep" / "s2.ome.tif")
    _touch(tmp_path / "notes.txt")
    (tmp_path / "c.ome.zarr").mkdir()
    _touch(tmp_path / "c.ome.zarr" / "0" / "0.png")  # inside a zarr store: not a separate slide
    _touch(tmp_path / ".hidden" / "h.svs")
    jobs = read_inputs(tmp_path)
    by_name = {j.name: Path(j.path).relative_to(tmp_path).as_posix() for j in jobs}
    assert by_name == {"a__s1": "a/s1.svs", "b__s1": "b/s1.svs", "s2": "b/deep/s2.ome.tif", "c": "c.ome.zarr"}


def test_pattern_selects_and_excludes_output_folder(tmp_path):
    _touch(tmp_path / "x.svs")
    _touch(tmp_path / "y.ndpi")
    _touch(tmp_path / "out" / "x.svs")  # the batch output inside the input folder is never an input
    jobs = read_inputs(tmp_path, patterns=["*.SVS"], exclude=tmp_path / "out")
    assert [j.name for j in jobs] == ["x"]
    with pytest.raises(ConfigError, match="no slides"):
        read_inputs(tmp_path, patterns=["*.mrxs"])


def test_text_list_resolves_relative_paths_and_skips_comments(tmp_path):
    _touch(tmp_path / "slides" / "one.svs")
    lst = tmp_path / "list.txt"
    lst.write_text("# my slides\nslides/one.svs\n\n/abs/missing.tif\n")
    jobs = read_inputs(lst)
    assert [(j.name, j.path, j.row) for j in jobs] == [
        ("one", str(tmp_path / "slides" / "one.svs"), 2),
        ("missing", "/abs/missing.tif", 4),  # a missing file is a failed slide at run time, not a stop
    ]


def test_csv_manifest_overrides_per_row(tmp_path):
    _touch(tmp_path / "a.svs")
    _touch(tmp_path / "b.svs")
    _touch(tmp_path / "region.geojson")
    (tmp_path / "m.csv").write_text(
        'path,mpp,target_mpp,roi,name\na.svs,0.25,,"0,0,100,50;10,10,5,5",first\nb.svs,,2.0,region.geojson,\n'
    )
    a, b = read_inputs(tmp_path / "m.csv")
    assert (a.name, a.mpp, a.target_mpp, a.roi, a.problem) == (
        "first",
        0.25,
        None,
        (Box(0, 0, 100, 50), Box(10, 10, 5, 5)),
        None,
    )
    assert (b.name, b.mpp, b.target_mpp, b.roi) == ("b", None, 2.0, str(tmp_path / "region.geojson"))


def test_tsv_row_with_a_bad_value_becomes_a_problem_not_a_stop(tmp_path):
    (tmp_path / "m.tsv").write_text("Slide\tMPP\n/x/a.svs\tabc\n/x/b.svs\t0.5\n")
    a, b = read_inputs(tmp_path / "m.tsv")
    assert a.problem == "manifest row 2: mpp must be a positive number, got 'abc'"
    assert b.problem is None and b.mpp == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mpp,name\n1,a\n", "needs a 'path' column"),
        ("path,colour\na.svs,red\n", "unknown manifest column 'colour'"),
        ("path,name\na.svs,n\nb.svs,n\n", "output name 'n' is given to more than one row"),
        ("path\n", "names no slides"),
    ],
)
def test_malformed_manifest_stops_with_one_line(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_inputs(tmp_path / "m.csv")


def test_missing_input_and_single_slide(tmp_path):
    with pytest.raises(SlideNotFoundError):
        read_inputs(tmp_path / "nope")
    one = _touch(tmp_path / "only.ndpi")
    (job,) = read_inputs(one)
    assert (job.name, job.path) == ("only", str(one))


def test_names_and_rois():
    assert output_name("/a/b/CMU-1 small.ome.tiff") == "CMU-1_small"
    assert output_name("/a/_batch.svs") == "batch"  # never the state folder
    assert output_name("/a/report.md.svs") == "report.md_"  # never the report
    assert parse_roi("1 2 3 4") == (Box(1, 2, 3, 4),)
    with pytest.raises(ValueError, match="w, h > 0"):
        parse_roi("0,0,0,5")
    with pytest.raises(ValueError, match="neither"):
        parse_roi("nowhere.geojson")
