"""The OME-Zarr store: NGFF 0.4 that ome-zarr-py reads, labels aligned with the image at every level,
pyramids built in bounded blocks, written under a temporary name and resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vimscope.config import ClassSpec
from vimscope.types import Box
from vimscope.writers import pyramid
from vimscope.writers.omezarr import OmeZarrWriter

CLASSES = [ClassSpec("background", [0, 0, 0]), ClassSpec("tumor", [200, 0, 0]), ClassSpec("stroma", [0, 160, 0])]
SHAPE = (600, 700)  # odd sizes on purpose: levels end in partial chunks
CHUNK = 128


def synthetic(shape=SHAPE, seed=0):
    """A smooth RGB image (JPEG-friendly), a class map and instance ids made of 2x2-constant blocks."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([(yy * 0.3) % 256, (xx * 0.3) % 256, ((yy + xx) * 0.2) % 256], -1).astype(np.uint8)
    coarse = rng.integers(0, 3, (h // 2 + 1, w // 2 + 1)).astype(np.uint8)
    classes = np.kron(coarse, np.ones((2, 2), np.uint8))[:h, :w]
    nuclei = np.kron(rng.integers(0, 1000, (h // 2 + 1, w // 2 + 1)), np.ones((2, 2), np.int64))[:h, :w]
    probs = np.stack([(classes == k) * 255 for k in range(3)], -1).astype(np.uint8)
    return image, classes, nuclei.astype(np.uint32), probs


def write_store(path, *, image=True, pyramid_mode="post", bands=None, features=True, **kw):
    img, cls, nuc, probs = synthetic()
    writer = OmeZarrWriter(
        path,
        out_shape=SHAPE,
        scale_um=0.5,
        classes=CLASSES,
        image=image,
        probabilities=3,
        features=8 if features else None,
        instances=True,
        chunk=CHUNK,
        metadata={"model": "vim_test", "checkpoint_sha256": "ab" * 32, "tile": 512, "halo": 32, "mpp": 0.5},
        pyramid=pyramid_mode,
        **kw,
    )
    h, w = SHAPE
    band = 2 * CHUNK
    for y in range(0, h, band):
        if bands is not None and y // band not in bands:
            continue
        for x in range(0, w, band):
            b = Box(x, y, min(band, w - x), min(band, h - y))
            sl = (slice(b.y, b.y1), slice(b.x, b.x1))
            if image:
                writer.write_block("image", b, img[sl])
            writer.write_block("classes", b, cls[sl])
            writer.write_block("nuclei", b, nuc[sl])
            writer.write_block("probabilities", b, probs[sl])
            if features:
                fb = writer.grid_box("features", b)
                feats = np.full((fb.h, fb.w, 8), fb.x + fb.y, np.float16)
                writer.write_block("features", b, feats)
        writer.flush()
        writer.mark_done(f"band-{y // band}")
    return writer


def _transforms(meta):
    """(scale, translation) of y/x per level, from ome-zarr-py node metadata or a raw multiscales entry."""
    levels = meta.get("coordinateTransformations") or [d["coordinateTransformations"] for d in meta["datasets"]]
    out = []
    for level in levels:
        scale = next(t["scale"] for t in level if t["type"] == "scale")
        trans = next((t["translation"] for t in level if t["type"] == "translation"), [0.0] * len(scale))
        out.append((tuple(scale[-2:]), tuple(trans[-2:])))
    return out


def test_store_opens_with_ome_zarr_py_and_labels_align(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    writer = write_store(tmp_path / "slide.ome.zarr")
    assert not writer.final_path.exists() and writer.partial_path.is_dir()
    stats = writer.finalize()
    final = writer.commit()
    assert final.is_dir() and not writer.partial_path.exists()

    nodes = {node.zarr.path.rstrip("/").split("/")[-1]: node for node in Reader(parse_url(str(final)))()}
    image, classes, nuclei = nodes["slide.ome.zarr"], nodes["classes"], nodes["nuclei"]
    assert len(image.data) == len(classes.data) == len(nuclei.data) == writer.levels >= 3
    image_tf = _transforms(image.metadata)
    assert image_tf[0] == ((0.5, 0.5), (0.0, 0.0))
    for label in (classes, nuclei):
        assert _transforms(label.metadata) == image_tf, "labels and image differ in scale or translation"
        for lvl_img, lvl_lab in zip(image.data, label.data):
            assert tuple(lvl_img.shape[-2:]) == tuple(lvl_lab.shape)
    # colours and names of the classes
    assert classes.metadata["color"][1] == pytest.approx([200 / 255, 0, 0, 1])
    props = classes.zarr.root_attrs["image-label"]["properties"]
    assert [p["class"] for p in props] == ["background", "tumor", "stroma"]

    img, cls, nuc, probs = synthetic()
    np.testing.assert_array_equal(np.asarray(classes.data[0]), cls)
    np.testing.assert_array_equal(np.asarray(nuclei.data[0]), nuc)
    np.testing.assert_array_equal(np.asarray(classes.data[1]), cls[::2, ::2])  # 2x2-constant: mode is exact
    np.testing.assert_array_equal(np.moveaxis(np.asarray(image.data[0]), 0, -1), img)  # lossless by default
    level1 = np.asarray(image.data[1]).astype(np.float32)
    expect1 = np.moveaxis(img.astype(np.float32).reshape(300, 2, 350, 2, 3).mean((1, 3)), -1, 0)
    assert np.abs(level1 - expect1).max() <= 0.5  # the 2x2 mean, rounded
    assert stats["class_pixels"] == {n: int((cls == i).sum()) for i, n in enumerate(["background", "tumor", "stroma"])}


def test_store_validates_against_ngff_04_models(tmp_path):
    import zarr
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel

    writer = write_store(tmp_path / "s.ome.zarr")
    writer.finalize()
    group = zarr.open_group(str(writer.commit()), mode="r", zarr_format=2)
    assert group.metadata.zarr_format == 2
    Image.from_zarr(group)
    ImageLabel.from_zarr(group["labels/classes"])
    ImageLabel.from_zarr(group["labels/nuclei"])
    # probabilities and features: their own multiscale groups, features at the token grid's scale
    Image.from_zarr(group["probabilities"])
    feats = group["features"]
    Image.from_zarr(feats)
    ms = feats.attrs["multiscales"][0]
    assert _transforms(ms)[0] == ((0.5 * 16, 0.5 * 16), (0.5 * 15 / 2, 0.5 * 15 / 2))
    assert ms["metadata"]["vimscope"]["checkpoint_sha256"] == "ab" * 32
    assert feats["0"].dtype == np.float16 and feats["0"].shape == (8, 38, 44)
    assert group["probabilities"].attrs["channel_names"] == ["background", "tumor", "stroma"]
    # features: each token-grid block holds the value it was written with
    assert float(feats["0"][0, 16, 16]) == 16 + 16


def test_no_image_copy_writes_standalone_label_images(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    writer = write_store(tmp_path / "s.ome.zarr", image=False, features=False)
    writer.finalize()
    final = writer.commit()
    root = json.loads((final / ".zattrs").read_text())
    assert "multiscales" not in root and root["vimscope"]["complete"] is True
    (node,) = list(Reader(parse_url(str(final / "classes")))())
    assert len(node.data) == writer.levels
    assert _transforms(node.metadata)[1] == ((1.0, 1.0), (0.25, 0.25))
    _, cls, _, _ = synthetic()
    np.testing.assert_array_equal(np.asarray(node.data[0]), cls)


def test_incremental_pyramid_equals_post_pass(tmp_path):
    import zarr

    a = write_store(tmp_path / "a.ome.zarr", pyramid_mode="post", image=False)
    b = write_store(tmp_path / "b.ome.zarr", pyramid_mode="incremental", image=False)
    # incremental: the coarse levels are already current after each flush, before finalize
    lvl2 = np.asarray(b.array("classes", 2))
    sa, sb = a.finalize(), b.finalize()
    assert sa["class_pixels"] == sb["class_pixels"]
    ga = zarr.open_group(str(a.commit()), mode="r")
    gb = zarr.open_group(str(b.commit()), mode="r")
    for name in ("classes", "nuclei", "probabilities", "features"):
        for level in range(len(ga[name].attrs["multiscales"][0]["datasets"])):
            np.testing.assert_array_equal(ga[f"{name}/{level}"][...], gb[f"{name}/{level}"][...], f"{name}/{level}")
    np.testing.assert_array_equal(lvl2, ga["classes/2"][...])


def test_background_flushes_wait_for_final_rows_and_build_each_chunk_once(tmp_path, monkeypatch):
    """``flush_async(final=...)``: coarse chunks whose finer rows are not all final wait for a later flush; the
    pyramid ends equal to a post-pass one, and no coarse chunk is built twice (bands of 1.5 chunk rows)."""
    import zarr

    from vimscope.writers import chunkio

    stored = []
    original = chunkio.ChunkArray.store
    monkeypatch.setattr(
        chunkio.ChunkArray,
        "store",
        lambda self, key, block: (stored.append((str(self.root), key)), original(self, key, block)),
    )
    img, cls, nuc, probs = synthetic()
    ref = write_store(tmp_path / "ref.ome.zarr", pyramid_mode="post", image=False, features=False)
    ref.finalize()
    w = OmeZarrWriter(
        tmp_path / "w.ome.zarr",
        out_shape=SHAPE,
        scale_um=0.5,
        classes=CLASSES,
        image=False,
        probabilities=3,
        instances=True,
        chunk=CHUNK,
        pyramid="incremental",
    )
    stored.clear()
    h, width = SHAPE
    band = CHUNK + CHUNK // 2
    for y in range(0, h, band):
        b = Box(0, y, width, min(band, h - y))
        sl = (slice(b.y, b.y1), slice(0, width))
        for name, data in (("classes", cls), ("nuclei", nuc), ("probabilities", probs)):
            w.write_block(name, b, data[sl])
        w.wait()
        final = b.y1 // CHUNK * CHUNK if b.y1 < h else h  # the chunk row the next band finishes is not final
        w.flush_async(final=dict.fromkeys(("classes", "nuclei", "probabilities"), final)).result()
    w.finalize()
    coarse = [k for k in stored if not k[0].endswith("/0")]
    assert len(coarse) == len(set(coarse)), "a coarse chunk was built twice"
    ga, gb = zarr.open_group(str(ref.commit()), mode="r"), zarr.open_group(str(w.commit()), mode="r")
    for name in ("classes", "nuclei", "probabilities"):
        for level in range(len(ga[name].attrs["multiscales"][0]["datasets"])):
            np.testing.assert_array_equal(ga[f"{name}/{level}"][...], gb[f"{name}/{level}"][...], f"{name}/{level}")


def test_pyramid_post_pass_reads_bounded_blocks(monkeypatch):
    """The post-pass never reads more than its block budget of a level at once."""
    shapes = pyramid.level_shapes((1000, 3000), 4)
    reads = []

    def read(level, box):
        reads.append((level, box))
        return np.zeros((box.h, box.w), np.uint8)

    budget = 64 * 64 * 4 * 4 * 4  # four 64-px chunks' worth of input at 4 bytes per pixel, x4
    monkeypatch.setattr(pyramid, "BLOCK_BYTES", budget)
    pyramid.build_region(read, lambda *a: None, pyramid.downsample_mode, shapes, 64, bytes_per_px=4)
    assert max(box.area for _, box in reads) * 4 <= budget
    level0 = [box for level, box in reads if level == 0]
    assert sum(b.area for b in level0) == 1000 * 3000  # level 0 read once, block by block
    assert len(level0) > 20


def test_resume_keeps_written_bands_and_rejects_other_layouts(tmp_path):
    path = tmp_path / "r.ome.zarr"
    first = write_store(path, bands={0, 1}, features=False)
    assert first.done() == {"band-0", "band-1"}
    # a chunk the killed run was writing: its temporary file stays behind, the resumed run removes it
    leftover = first.partial_path / "labels" / "classes" / "0" / "3" / "0.4242-17.partial"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a chunk")
    record_tmp = first.partial_path / "..vimscope_resume.json.4242.tmp"  # killed while saving the resume record
    record_tmp.write_bytes(b'{"done_ba')
    del first
    again = write_store(path, bands={2}, features=False, resume=True)
    assert again.resumed and again.done() == {"band-0", "band-1", "band-2"}
    assert not leftover.exists() and not list(path.parent.rglob("*.partial*/**/*.partial"))
    assert not record_tmp.exists()
    _, cls, _, _ = synthetic()
    np.testing.assert_array_equal(np.asarray(again.array("classes")), cls)
    # a different layout (here: chunk size) starts over instead of mixing two runs
    other = OmeZarrWriter(path, out_shape=SHAPE, scale_um=0.5, classes=CLASSES, chunk=64, resume=True)
    assert not other.resumed and other.done() == set()
    assert not np.asarray(other.array("classes")).any()


def test_block_checks(tmp_path):
    w = OmeZarrWriter(tmp_path / "c.ome.zarr", out_shape=(100, 120), scale_um=1.0, classes=CLASSES, chunk=64)
    with pytest.raises(ValueError, match="shape"):
        w.write_block("classes", Box(0, 0, 64, 64), np.zeros((64, 63), np.uint8))
    with pytest.raises(ValueError, match="not inside"):
        w.write_block("classes", Box(100, 0, 64, 64), np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="no 'nuclei' output"):
        w.write_block("nuclei", Box(0, 0, 64, 64), np.zeros((64, 64), np.uint32))
    with pytest.raises(ValueError, match="multiple of feature_stride"):
        OmeZarrWriter(tmp_path / "d.ome.zarr", out_shape=(100, 120), scale_um=1.0, classes=CLASSES, chunk=72)


def test_commit_refuses_to_replace_without_overwrite(tmp_path):
    from vimscope.errors import OutputError

    path = tmp_path / "o.ome.zarr"
    for attempt in range(2):
        w = OmeZarrWriter(path, out_shape=(64, 64), scale_um=1.0, classes=CLASSES, chunk=64, image=False)
        w.write_block("classes", Box(0, 0, 64, 64), np.full((64, 64), attempt + 1, np.uint8))
        w.finalize()
        if attempt == 0:
            w.commit()
    with pytest.raises(OutputError, match="already exists"):
        w.commit()
    w.commit(overwrite=True)
    import zarr

    assert zarr.open_array(str(path / "classes" / "0"), mode="r")[0, 0] == 2
    assert not w.partial_path.exists()


def test_every_array_written_by_hand_reads_back_with_zarr(tmp_path):
    """The chunks ``writers.chunkio`` writes by hand are what zarr reads: every level of every array, compared
    with the writer's own read-back and (level 0) with what was written."""
    import zarr

    writer = write_store(tmp_path / "z.ome.zarr", pyramid_mode="incremental")
    writer.finalize()
    store = writer.commit()
    img, cls, nuc, probs = synthetic()
    written = {
        "image": np.moveaxis(img, -1, 0),
        "classes": cls,
        "nuclei": nuc,
        "probabilities": np.moveaxis(probs, -1, 0),
    }
    root = zarr.open_group(str(store), mode="r")
    checked = 0
    for name in writer.names:
        for level in range(writer.level_count(name)):
            array = root[(writer.group_path(name).relative_to(store) / str(level)).as_posix()]
            h, w = array.shape[-2:]
            theirs = np.asarray(array[...])
            np.testing.assert_array_equal(theirs, writer.read_block(name, Box(0, 0, w, h), level), f"{name}/{level}")
            if level == 0 and name in written:
                np.testing.assert_array_equal(theirs, written[name], name)
            checked += 1
    assert checked == 4 * writer.levels + writer.level_count("features")


class _RowCounter:
    """A 2-D array-like that records how many rows each read asks for."""

    def __init__(self, data):
        self.data, self.reads = data, []
        self.ndim, self.shape, self.dtype = data.ndim, data.shape, data.dtype

    def __getitem__(self, key):
        block = self.data[key]
        self.reads.append(block.shape[0])
        return block


def test_labels_writer_on_its_own(tmp_path, monkeypatch):
    """``write_labels``: NGFF labels that ome-zarr-py and the NGFF models accept, placed by scale and origin,
    coloured by class, level 0 read in bounded bands; an instance map (many values) gets no colour table."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v04.image_label import ImageLabel

    from vimscope.writers import write_labels
    from vimscope.writers.omezarr import labels

    _, cls, nuc, _ = synthetic()
    monkeypatch.setattr(labels, "BAND_BYTES", 128 * 700 * 4)  # one chunk row of 128 at a time
    monkeypatch.setattr(labels, "CHUNK", 128)
    source = _RowCounter(cls.astype(np.int64))
    classes = [{"value": 1, "name": "tumor", "color": [200, 0, 0]}, {"value": 2, "name": "stroma", "color": [0, 9, 0]}]
    path = write_labels(
        tmp_path / "marks.ome.zarr", source, name="marks", scale=(0.5, 0.25), origin=(10.0, 20.0), unit="micrometer",
        classes=lambda values: [c for c in classes if c["value"] in values], metadata={"layer": "marks"},
    )  # fmt: skip
    assert max(source.reads) <= 128 and sum(source.reads) == cls.shape[0]
    group = zarr.open_group(str(path), mode="r", zarr_format=2)
    ImageLabel.from_zarr(group["labels/marks"])
    assert group["labels"].attrs["labels"] == ["marks"] and group["labels/marks/0"].dtype == np.uint32
    assert group.attrs["vimscope"]["metadata"] == {"layer": "marks"} and group.attrs["vimscope"]["complete"]
    (node,) = [n for n in Reader(parse_url(str(path / "labels" / "marks")))() if n.data]
    np.testing.assert_array_equal(np.asarray(node.data[0]), cls)
    np.testing.assert_array_equal(np.asarray(node.data[1]), cls[::2, ::2])
    assert _transforms(node.metadata)[:2] == [((0.5, 0.25), (10.0, 20.0)), ((1.0, 0.5), (10.25, 20.125))]
    props = group["labels/marks"].attrs["image-label"]["properties"]
    assert [p["class"] for p in props] == ["0", "tumor", "stroma"]

    ids = write_labels(tmp_path / "ids.ome.zarr", nuc, name="cells", classes=lambda values: pytest.fail("called"))
    attrs = zarr.open_group(str(ids), mode="r")["labels/cells"].attrs
    assert "colors" not in attrs["image-label"]
    np.testing.assert_array_equal(zarr.open_array(str(ids / "labels/cells/0"))[...], nuc)


def test_scratch_probabilities_keep_one_level_in_the_fast_codec_and_read_back(tmp_path):
    """A nuclei run's probabilities that are not an output: read back by the instance step, then discarded, so no
    pyramid is built for them and they are coded with the cheapest lossless codec; published ones keep both."""
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    stores = {}
    for scratch in (False, True):
        w = OmeZarrWriter(
            tmp_path / f"{scratch}.ome.zarr", out_shape=(100, 120), scale_um=1.0, classes=CLASSES, chunk=64,
            probabilities=3, scratch_probabilities=scratch, pyramid="incremental",
        )  # fmt: skip
        w.write_block("probabilities", Box(0, 0, 120, 100), block)
        w.flush()
        np.testing.assert_array_equal(w.read_block("probabilities", Box(0, 0, 120, 100)), np.moveaxis(block, -1, 0))
        stores[scratch] = w
    assert stores[False].level_count("probabilities") == stores[False].level_count("classes") > 1
    assert stores[True].level_count("probabilities") == 1
    assert stores[True]._groups["probabilities"].compressor.get_config()["cname"] == "lz4"
    assert stores[False]._groups["probabilities"].compressor.get_config()["cname"] == "zstd"
    stats = stores[True].finalize()
    stores[True].discard("probabilities", stats=stats)
    path = stores[True].commit()
    assert not (path / "probabilities").exists() and (path / "labels" / "classes").exists()
