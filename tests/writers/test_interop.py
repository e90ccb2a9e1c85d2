"""A store the pipeline writes opens where vimscope is not installed: plain zarr + numcodecs (and ome-zarr-py).

The reader runs in a subprocess whose ``sys.path`` holds the standard library and a folder of links to the
installed distributions of zarr, numcodecs, numpy and ome-zarr-py and their requirements only (``python -I -S``:
no site-packages, no ``.pth`` files, no entry points of other distributions), so neither vimscope, its entry
points nor imagecodecs' codecs are there to help. A JPEG image copy (the opt-in) fails there: the control that
shows the sandbox could fail at all.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from vimscope.config import ClassSpec
from vimscope.types import Box

READERS = ("zarr", "numcodecs", "numpy", "ome-zarr")  # ome-zarr-py when it is installed (dev extras)
FORBIDDEN = ("vimscope", "vimscope_kernels", "vimscope_napari", "imagecodecs")

READ_STORE = r"""
import hashlib, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import importlib.util
for name in sys.argv[3].split(","):
    assert importlib.util.find_spec(name) is None, f"{name} is importable in the sandbox"
import numpy as np
import zarr
store = Path(sys.argv[2])
out = {"arrays": {}, "ome_zarr": None}
for attrs in sorted(store.rglob(".zattrs")):
    meta = json.loads(attrs.read_text())
    if "multiscales" not in meta:
        continue
    group = attrs.parent
    datasets = meta["multiscales"][0]["datasets"]
    for ds in {datasets[0]["path"], datasets[-1]["path"]}:
        path = (group / ds).relative_to(store).as_posix()
        a = np.asarray(zarr.open_array(str(group / ds), mode="r")[...])
        out["arrays"][path] = [list(a.shape), str(a.dtype), hashlib.sha256(a.tobytes()).hexdigest()]
if importlib.util.find_spec("ome_zarr") is not None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    nodes = []
    for node in Reader(parse_url(str(store)))():
        if not node.data:  # the "labels" folder itself
            continue
        first, last = (np.asarray(node.data[i]) for i in (0, -1))
        nodes.append([str(node.zarr.path), len(node.data), list(first.shape), list(last.shape)])
    out["ome_zarr"] = nodes
print(json.dumps(out))
"""


def _distributions(names) -> list[md.Distribution]:
    """The installed distributions ``names`` with everything they require (extras left out)."""
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        try:
            dist = md.distribution(todo.pop())
        except md.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder of links to the top-level files of the reader distributions (and their dist-info)."""
    folder = tmp_path_factory.mktemp("plain-zarr-site")
    for dist in _distributions(READERS):
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src, dst = Path(dist.locate_file(top)), folder / top
            if src.exists() and not dst.exists() and top.split(".")[0] not in FORBIDDEN:
                dst.symlink_to(src)
    assert (folder / "zarr").is_dir() and (folder / "numcodecs").is_dir()
    assert not any((folder / name).exists() for name in FORBIDDEN)
    return folder


def read_without_vimscope(sandbox: Path, store: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-I", "-S", "-c", READ_STORE, str(sandbox), str(store), ",".join(FORBIDDEN)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def levels_as_vimscope_reads_them(store: Path) -> dict:
    """First and last level of every multiscale group, read here (where vimscope is installed)."""
    import zarr

    out = {}
    for attrs in sorted(store.rglob(".zattrs")):
        meta = json.loads(attrs.read_text())
        if "multiscales" not in meta:
            continue
        datasets = meta["multiscales"][0]["datasets"]
        for ds in {datasets[0]["path"], datasets[-1]["path"]}:
            a = np.asarray(zarr.open_array(str(attrs.parent / ds), mode="r")[...])
            path = (attrs.parent / ds).relative_to(store).as_posix()
            out[path] = [list(a.shape), str(a.dtype), hashlib.sha256(a.tobytes()).hexdigest()]
    return out


@pytest.fixture(scope="module")
def pipeline_store(tmp_path_factory) -> Path:
    """A run of the tiny instance model on a generated slide: image, classes, nuclei, probabilities."""
    from tests.pipeline.conftest import write_tiff
    from vimscope.pipeline import PipelineConfig, iter_run

    folder = tmp_path_factory.mktemp("interop")
    slide = write_tiff(folder / "slide.tif", 256, 320, tile=128, seed=1)
    config = PipelineConfig.load(
        model="vim_test_nuclei",
        device="cpu",
        tissue=False,
        chunk=64,
        outputs=["image", "classes", "nuclei", "probabilities"],
    )
    done = [e for e in iter_run(slide, config, out=folder / "out") if e.stage == "done"]
    return Path(done[-1].outputs["result"].paths["zarr"])


def test_pipeline_store_reads_with_plain_zarr_and_ome_zarr_py(sandbox, pipeline_store):
    done = read_without_vimscope(sandbox, pipeline_store)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    want = levels_as_vimscope_reads_them(pipeline_store)
    by_group: dict[str, list[str]] = {}
    for path in want:
        by_group.setdefault(path.rpartition("/")[0], []).append(path)
    assert set(by_group) == {"", "labels/classes", "labels/nuclei", "probabilities"}
    assert all(len(paths) == 2 for paths in by_group.values()), by_group  # levels 0 and L-1 of each
    assert got["arrays"] == want  # every array's first and last level, bit for bit
    assert (got["ome_zarr"] is None) == (importlib.util.find_spec("ome_zarr") is None)
    if got["ome_zarr"] is not None:  # ome-zarr-py follows the image to its labels and reads every node
        nodes = {Path(path).name: (levels, first) for path, levels, first, _ in got["ome_zarr"]}
        assert {"classes", "nuclei"} <= set(nodes), nodes
        assert nodes["classes"][0] == nodes[pipeline_store.name][0] >= 2


def test_every_array_uses_a_standard_codec(pipeline_store):
    ids = {json.loads(p.read_text())["compressor"]["id"] for p in pipeline_store.rglob(".zarray")}
    assert ids == {"blosc"}


def _jpeg_store(path: Path) -> Path:
    """A small OME-Zarr whose image copy is JPEG-coded (the opt-in codec), committed."""
    from vimscope.writers.omezarr import OmeZarrWriter

    writer = OmeZarrWriter(
        path,
        out_shape=(128, 160),
        scale_um=0.5,
        classes=[ClassSpec("background", [0, 0, 0]), ClassSpec("tissue", [200, 0, 0])],
        chunk=64,
        image_codec="jpeg",
    )
    image = np.random.default_rng(0).integers(0, 255, (128, 160, 3), dtype=np.uint8)
    writer.write_block("image", Box(0, 0, 160, 128), image)
    writer.write_block("classes", Box(0, 0, 160, 128), np.ones((128, 160), np.uint8))
    writer.finalize()
    return writer.commit()


def test_jpeg_image_copy_is_opt_in_and_fails_without_vimscope(sandbox, tmp_path):
    from vimscope.io import register_jpeg_codec

    store = _jpeg_store(tmp_path / "jpeg.ome.zarr")
    assert json.loads((store / "0" / ".zarray").read_text())["compressor"]["id"] == "imagecodecs_jpeg"
    done = read_without_vimscope(sandbox, store)
    assert done.returncode != 0 and "imagecodecs_jpeg" in done.stderr
    register_jpeg_codec()  # where vimscope is installed, such a store still reads
    assert levels_as_vimscope_reads_them(store)["0"][0] == [3, 128, 160]


def test_open_slide_reads_a_jpeg_image_copy_in_a_fresh_process(tmp_path):
    """The reader registers the codec itself: a new process that only calls ``open_slide`` reads the pixels."""
    store = _jpeg_store(tmp_path / "jpeg.ome.zarr")
    code = (
        "import sys; from vimscope.io import open_slide; from vimscope.types import Box; "
        "r = open_slide(sys.argv[1]); a = r.read(Box(0, 0, 160, 128), 0); print(a.shape, int(a.std() > 20))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(128,", "160,", "3)", "1"]


def test_jpeg_is_an_explicit_setting_whose_help_names_the_readers_that_fail(capsys):
    from vimscope.cli.main import main
    from vimscope.errors import ConfigError
    from vimscope.pipeline import PipelineConfig

    assert PipelineConfig.load().image_codec == "blosc"
    assert PipelineConfig.load(image_codec="jpeg").image_codec == "jpeg"
    with pytest.raises(ConfigError, match="image_codec"):
        PipelineConfig.load(image_codec="webp")
    assert main(["segment", "--help"]) == 0
    help_text = "".join(capsys.readouterr().out.split())  # click wraps lines, at hyphens too
    assert "--image-codec[blosc|jpeg]" in help_text
    for reader in ("ome-zarr-py", "napari-ome-zarr", "QuPath", "Fiji/Bio-Formats", "vizarr", "Neuroglancer"):
        assert reader in help_text, reader
