"""``vimscope train``, ``vimscope eval`` and ``vimscope pack`` from the command line, as the README shows them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import shared_path
from vimscope.cli.main import main


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    """Two image/mask pairs cut from CryoNuSeg's real tile (instance masks as uint16 PNG)."""
    from vimscope.train.datasets.base import load_source

    images = load_source({"kind": "cryonuseg", "path": str(shared_path("data/labelled/nuclei-cryonuseg"))})
    (im,) = [im for im in images if im.name == "TCGA-DE-A4MA"]
    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    parts = {"a": (slice(0, 512), slice(128, 384)), "b": (slice(256, 384), slice(0, 128))}  # b holds 22 nuclei
    for name, (rows, cols) in parts.items():
        Image.fromarray(im.image[rows, cols]).save(root / "images" / f"{name}.png")
        Image.fromarray(im.instances[rows, cols].astype(np.uint16)).save(root / "masks" / f"{name}.png")
    return root


def _config(tmp_path, folder) -> str:
    cfg = {
        "model": {"base": "vim_test_nuclei", "tile": 128, "halo": 16},
        "data": [
            {"kind": "folder", "path": str(folder), "mask_kind": "instances", "classes": ["background", "Nucleus"]}
        ],
        "split": {"validation": ["b"]},
        "out": "run",
        "tile": 64,
        "batch_size": 2,
        "epochs": 1,
        "steps_per_epoch": 3,
        "lr": 3e-3,
        "warmup_steps": 1,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_train_then_eval_through_the_pipeline(tmp_path, labelled_folder, capsys, monkeypatch):
    config = _config(tmp_path, labelled_folder)
    assert main(["train", config, "--device", "cpu"]) == 0
    run = tmp_path / "run"  # relative to the config file
    history = json.loads((run / "metrics.json").read_text())
    assert len(history) == 1 and history[0]["step"] == 3 and "val_aji" in history[0]
    assert "done:" in capsys.readouterr().out
    # the checkpoint remembers its data and split: eval scores the validation image through the pipeline
    out = tmp_path / "eval.json"
    assert main(["eval", str(run / "best.safetensors"), "--device", "cpu", "-o", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 1 and summary["per_image"][0]["image"] == "b" and summary["path"] == "pipeline"
    assert summary["per_image"][0]["objects_gt"] == 22 and 0 <= summary["aji"] <= 1
    # the training loop's in-memory validation and the product's path agree on the class map
    assert summary["mean_dice"] == pytest.approx(history[0]["val_mean_dice"], abs=0.01)
    # plain image files: a folder of image/mask pairs, here through the in-memory path
    folder_out = tmp_path / "folder.json"
    args = ["eval", str(run / "best.safetensors"), "--folder", str(labelled_folder), "--path", "memory"]
    assert main([*args, "--device", "cpu", "-o", str(folder_out)]) == 0
    assert json.loads(folder_out.read_text())["images"] == 2
    # another inference tile and halo than the model's (issue 12's larger-tile check): the pipeline runs with them
    import vimscope.pipeline.engine as engine

    setups, make_plan = [], engine.make_plan
    monkeypatch.setattr(engine, "make_plan", lambda *a, **k: setups.append(make_plan(*a, **k)) or setups[-1])
    tiled = tmp_path / "tiled.json"
    args = ["eval", str(run / "best.safetensors"), "--tile", "192", "--overlap", "8", "--device", "cpu"]
    assert main([*args, "-o", str(tiled)]) == 0
    summary = json.loads(tiled.read_text())
    assert (summary["tile"], summary["halo"], summary["images"]) == (192, 8, 1)
    # one plan, with the asked halo and a tile other than the model's 128: 192 clamped to the 128 px image's 144
    assert [(s.tile, s.halo) for s in setups] == [(144, 8)] and setups[0].tiling.tile == 144
    capsys.readouterr()
    assert main(["eval", str(run / "best.safetensors"), "--tile", "200", "--device", "cpu"]) == 8
    assert "tile 200 must be a multiple of 16" in capsys.readouterr().err
    # resuming a finished run has nothing left to do (the saved schedule wins over the file's)
    assert main(["train", config, "--resume", "--device", "cpu"]) == 0


def test_pack_then_train_from_the_pack(tmp_path, labelled_folder, capsys):
    config = _config(tmp_path, labelled_folder)
    pack = tmp_path / "set.vspack"
    assert main(["pack", config, "-o", str(pack)]) == 0
    assert "2 images" in capsys.readouterr().out and pack.is_file()
    assert main(["train", config, "--pack", str(pack), "-o", str(tmp_path / "from-pack"), "--device", "cpu"]) == 0
    assert (tmp_path / "from-pack" / "model.safetensors").is_file()


def test_bad_input_is_one_line_and_an_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {base: vim_test}\ndata: [{kind: folder, path: nowhere}]\nepochs: zero\n")
    assert main(["train", str(bad)]) == 8
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs" in err[0]
    assert main(["eval", str(tmp_path / "missing.safetensors")]) == 10


def test_every_shipped_training_config_resolves():
    """The packaged configs (the shipped models' recipes) and the examples in configs/train load; models build."""
    from pathlib import Path

    from vimscope.config import packaged_names
    from vimscope.train.config import load_train_config, resolve_spec

    root = Path(__file__).resolve().parents[2]
    configs = [load_train_config(name) for name in packaged_names("train")]
    configs += [load_train_config(p) for p in sorted((root / "configs" / "train").glob("*.yaml"))]
    assert len(configs) >= 8
    for cfg in configs:
        spec = resolve_spec(cfg.model, tile=cfg.tile, class_names=["background", "x"])
        assert cfg.tile % spec.size_multiple == 0 and spec.tile % spec.size_multiple == 0
    # the models of one comparison share its data, split and recipe (only the model differs)
    for family, n_val in (("nuclei", 6), ("buildings", 6)):
        group = [load_train_config(n) for n in packaged_names("train") if n.startswith(family + "_")]
        assert len(group) >= 2
        recipe = {
            (
                json.dumps(c.data),
                tuple(c.split.validation),
                c.tile,
                c.batch_size,
                c.budget_minutes,
                c.lr,
                str(c.augment),
            )
            for c in group
        }
        assert len(recipe) == 1 and len(group[0].split.validation) == n_val
