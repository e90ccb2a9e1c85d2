"""``vimscope segment`` / ``vimscope features`` end to end, and bad input as one clear line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import IN_CI
from tests.pipeline.helpers import read_store
from vimscope.cli.main import main


def demo_slide():
    from vimscope.demo import demo_slide_path

    path = demo_slide_path()
    if path is None:
        msg = "demo slide missing: run .ci/setup"
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    return path


def test_segment_demo_slide_writes_a_valid_ome_zarr(tmp_path, capsys):
    """The untrained vim_test on the demo slide at 2 µm/px (a 554 x 741 px input): every run says it is untrained."""
    rc = main(
        [
            "segment",
            str(demo_slide()),
            "-o",
            str(tmp_path),
            "--model",
            "vim_test",
            "--device",
            "cpu",
            "--target-mpp",
            "2",
            "-q",
            "--format",
            "ome-tiff",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    stem = "CMU-1-Small-Region"
    report = out.out.strip()
    assert report.startswith(f"{stem}.svs:") and "untrained" in report and report.count("\n") == 0
    assert "untrained" in out.err  # said before the run too
    for name in (".ome.zarr", ".preview.png", ".summary.json", ".geojson", ".classes.ome.tif"):
        assert (tmp_path / f"{stem}{name}").exists(), name
    assert not list(tmp_path.glob("*.partial"))

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    nodes = list(Reader(parse_url(str(tmp_path / f"{stem}.ome.zarr")))())
    image = next(n for n in nodes if n.specs and isinstance(n.specs[0], Multiscales) and not n.load(Label))
    label = next(n for n in nodes if n.load(Label))
    assert len(image.data) == len(label.data) >= 2
    for img, lab in zip(image.data, label.data):
        assert tuple(img.shape[-2:]) == tuple(lab.shape[-2:])
    ms_img = image.metadata["coordinateTransformations"]
    ms_lab = label.metadata["coordinateTransformations"]
    assert [t[0]["scale"][-2:] for t in ms_img] == [t[0]["scale"][-2:] for t in ms_lab]
    assert ms_img[0][0]["scale"][-1] == pytest.approx(2.0)
    assert tuple(image.data[0].shape[-2:]) == (741, 554)
    summary = json.loads((tmp_path / f"{stem}.summary.json").read_text())
    assert summary["model"] == {**summary["model"], "name": "vim_test", "trained": False}
    assert sum(c["pixels"] for c in summary["class_areas"].values()) == 741 * 554

    # a second run with the same settings skips the finished slide (the device is not a setting of the outputs)
    again = ["segment", str(demo_slide()), "-o", str(tmp_path), "--model", "vim_test", "--target-mpp", "2", "-q"]
    assert main([*again, "--format", "ome-tiff", "--device", "cpu", "--workers", "1"]) == 0
    assert "done before with the same settings, skipped" in capsys.readouterr().out
    # another model is never silently counted as done: one line naming what differs, the output exit code
    other = ["segment", str(demo_slide()), "-o", str(tmp_path), "--device", "cpu", "--target-mpp", "2", "-q"]
    assert main([*other, "--format", "ome-tiff"]) == 9
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model: vim_test -> vim_tiny_nuclei" in err and "--overwrite" in err


def test_features_writes_the_token_grid(small_slide, tmp_path, capsys):
    rc = main(
        [
            "features",
            str(small_slide),
            "-o",
            str(tmp_path),
            "--model",
            "vim_test",
            "--device",
            "cpu",
            "--no-tissue",
            "-q",
            "--tile",
            "128",
            "--overlap",
            "16",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    got = read_store(tmp_path / "small-700x900.ome.zarr")
    f = got["features"]
    assert f.dtype == np.float16 and f.shape == (32, 44, 57)  # embed_dim 32, ceil(700 / 16), ceil(900 / 16)
    assert np.isfinite(f).all() and f.std() > 0


def _one_error_line(capsys, rc, code):
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert err.startswith("vimscope: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_and_its_own_exit_code(small_slide, tmp_path, capsys):
    base = ["segment", "-o", str(tmp_path), "--device", "cpu", "-q"]
    rc = main([*base[:1], str(tmp_path / "nope.svs"), *base[1:]])
    assert "nope.svs" in _one_error_line(capsys, rc, 3)
    fake = tmp_path / "fake.svs"
    fake.write_text("<html>not a slide</html>")
    rc = main([base[0], str(fake), *base[1:]])
    err = capsys.readouterr().err.strip()
    assert rc not in (0, 1, 70) and err.startswith("vimscope: error:") and "\n" not in err
    assert "nope" in _one_error_line(capsys, main([base[0], str(small_slide), *base[1:], "--model", "nope"]), 10)
    _one_error_line(capsys, main([base[0], str(small_slide), *base[1:], "--device", "gpu"]), 8)
    err = _one_error_line(capsys, main([base[0], str(small_slide), *base[1:], "--tile", "64", "--overlap", "32"]), 8)
    assert "halo" in err
    err = _one_error_line(
        capsys, main([base[0], str(small_slide), *base[1:], "--roi", str(tmp_path / "roi.geojson")]), 8
    )
    assert "roi.geojson" in err
    err = _one_error_line(capsys, main([base[0], str(small_slide), *base[1:], "--format", "geotiff"]), 8)
    assert "georeferenced" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("tile_size: 512\n")
    err = _one_error_line(capsys, main([base[0], str(small_slide), *base[1:], "--config", str(bad)]), 8)
    assert "tile_size" in err
    roi = tmp_path / "far.geojson"
    roi.write_text(
        json.dumps(
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[5000, 5000], [6000, 5000], [6000, 6000], [5000, 5000]]],
                },
            }
        )
    )
    _one_error_line(capsys, main([base[0], str(small_slide), *base[1:], "--roi", str(roi)]), 6)
    assert not list(tmp_path.glob("*.ome.zarr"))


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_several_slides_one_failing_still_runs_the_others(small_slide, tmp_path, capsys):
    rc = main(
        [
            "segment",
            str(tmp_path / "missing.svs"),
            str(small_slide),
            "-o",
            str(tmp_path),
            "--model",
            "vim_test_pointwise",
            "--device",
            "cpu",
            "--no-tissue",
            "-q",
            "--no-image-copy",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 3
    assert "missing.svs" in captured.err
    assert (tmp_path / "small-700x900.ome.zarr").is_dir()
