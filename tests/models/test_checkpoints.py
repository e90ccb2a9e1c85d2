"""Loading official-format and vimscope checkpoints: strict, safe, architecture inferred, pos-embed resampled."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib

import pytest
import torch
import yaml

from vimscope.errors import ModelError
from vimscope.models import VisionMamba, checkpoint_filter_fn, create_model, load_spec, save_weights
from vimscope.models.layers import resample_abs_pos_embed


def official_state_dict(embed_dim, depth, num_classes, *, d_state=16, grid=14, patch=16, expand=2, seed=0):
    """Random tensors under the official key names and shapes (written from hustvl/Vim's module, not ours)."""
    g = torch.Generator().manual_seed(seed)
    e, r = expand * embed_dim, math.ceil(embed_dim / 16)
    shapes = {
        "cls_token": (1, 1, embed_dim),
        "pos_embed": (1, grid * grid + 1, embed_dim),
        "patch_embed.proj.weight": (embed_dim, 3, patch, patch),
        "patch_embed.proj.bias": (embed_dim,),
    }
    if num_classes:
        shapes.update({"head.weight": (num_classes, embed_dim), "head.bias": (num_classes,)})
    for i in range(depth):
        p = f"layers.{i}.mixer."
        shapes.update(
            {
                p + "A_log": (e, d_state),
                p + "D": (e,),
                p + "A_b_log": (e, d_state),
                p + "D_b": (e,),
                p + "in_proj.weight": (2 * e, embed_dim),
                p + "conv1d.weight": (e, 1, 4),
                p + "conv1d.bias": (e,),
                p + "x_proj.weight": (r + 2 * d_state, e),
                p + "dt_proj.weight": (e, r),
                p + "dt_proj.bias": (e,),
                p + "conv1d_b.weight": (e, 1, 4),
                p + "conv1d_b.bias": (e,),
                p + "x_proj_b.weight": (r + 2 * d_state, e),
                p + "dt_proj_b.weight": (e, r),
                p + "dt_proj_b.bias": (e,),
                p + "out_proj.weight": (embed_dim, e),
                f"layers.{i}.norm.weight": (embed_dim,),
            }
        )
    shapes["norm_f.weight"] = (embed_dim,)
    state = {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}
    for k in state:
        if k.endswith("A_log"):
            state[k] = torch.log(torch.arange(1, d_state + 1.0)).repeat(e, 1)
        elif k.endswith("dt_proj.bias"):
            state[k] = state[k] - 4.0
    return state


def write_official(path, state, **args):
    torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(**args)}, path)
    return path


@pytest.mark.parametrize(
    "embed_dim,depth,num_classes,d_state,grid",
    [(64, 3, 10, 8, 4), (48, 2, 0, 16, 3), (96, 1, 7, 4, 2)],
    ids=["D64-depth3-K10", "D48-depth2-headless", "D96-depth1-K7"],
)
def test_official_checkpoints_of_other_shapes_build_and_load_strictly(
    tmp_path, embed_dim, depth, num_classes, d_state, grid
):
    state = official_state_dict(embed_dim, depth, num_classes, d_state=d_state, grid=grid)
    path = write_official(
        tmp_path / "custom.pth", state, model="my_own_vim", input_size=grid * 16, nb_classes=num_classes
    )
    model = create_model(weights=path)
    arch = model.spec.arch
    assert (arch["embed_dim"], arch["depth"], arch["d_state"], arch["num_classes"]) == (
        embed_dim,
        depth,
        d_state,
        num_classes,
    )
    assert arch["img_size"] == [grid * 16, grid * 16]
    loaded = model.state_dict() if isinstance(model, VisionMamba) else model.backbone.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    x = torch.randn(2, 3, grid * 16, grid * 16)
    with torch.no_grad():
        out = model(x)
    if num_classes:
        assert out.shape == (2, num_classes)
    else:
        assert model.spec.output == "features" and out["features"].shape == (2, embed_dim, grid, grid)


def test_registered_official_name_with_stride8_and_its_input_size(tmp_path):
    name = "vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2"
    state = official_state_dict(192, 24, 5, grid=7)  # a 64-px stride-8 fine-tune: (64 - 16) / 8 + 1 = 7
    path = write_official(tmp_path / "s8.pth", state, model=name, input_size=64)
    model = create_model(weights=path)
    spec = model.spec
    assert spec.name == "vim_tiny_s8"
    assert (spec.arch["stride"], spec.arch["img_size"], spec.size_multiple) == (8, [64, 64], 8)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_a_named_dense_model_takes_its_backbone_from_an_official_checkpoint(tmp_path):
    state = official_state_dict(32, 4, 10, d_state=4, grid=4)
    path = write_official(tmp_path / "small.pth", state, model="x", input_size=64)
    classifier = create_model(weights=path)
    dense = create_model("vim_test", weights=path)  # same backbone shapes as vim_test, UNETR head, no classifier
    assert dense.spec.trained and dense.spec.arch["img_size"] == [64, 64]
    assert all(torch.equal(v, state[k]) for k, v in dense.backbone.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(dense.features(x), classifier.forward_features(x), rtol=1e-5, atol=1e-6)
        assert dense(x)["logits"].shape == (1, 2, 64, 64)


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path):
    state = official_state_dict(32, 2, 3, d_state=4, grid=2)
    del state["layers.1.mixer.D_b"]
    state["layers.1.mixer.gamma"] = torch.ones(32)
    path = write_official(tmp_path / "bad.pth", state, model="x", input_size=32)
    with pytest.raises(ModelError) as err:
        create_model(weights=path)
    message = str(err.value)
    assert "missing keys: layers.1.mixer.D_b" in message
    assert "unexpected keys: layers.1.mixer.gamma" in message
    assert "\n" not in message


def test_a_named_model_refuses_weights_of_another_width(tmp_path):
    state = official_state_dict(48, 4, 0, d_state=4, grid=4)
    path = write_official(tmp_path / "wide.pth", state, model="x", input_size=64)
    with pytest.raises(
        ModelError, match=r"shape mismatches .*patch_embed.proj.weight \(48, 3, 16, 16\) vs \(32, 3, 16, 16\)"
    ):
        create_model("vim_test", weights=path)


def test_a_pickle_payload_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": official_state_dict(32, 1, 0, d_state=4, grid=2), "args": Payload()}, path)
    with pytest.raises(ModelError, match=r"refused to load: the checkpoint contains \S*system"):
        create_model(weights=path)
    assert not marker.exists()


def test_args_holding_anything_but_a_namespace_of_plain_values_are_refused(tmp_path):
    path = write_official(
        tmp_path / "p.pth", official_state_dict(32, 1, 0, d_state=4, grid=2), output_dir=pathlib.Path("/x")
    )
    with pytest.raises(ModelError, match="Path"):
        create_model(weights=path)


def test_unsupported_official_variants_and_non_checkpoints_are_refused(tmp_path):
    state = official_state_dict(32, 1, 0, d_state=4, grid=2)
    rope = write_official(tmp_path / "rope.pth", {**state, "rope.freqs_cos": torch.zeros(4, 8)}, model="vim_rope")
    with pytest.raises(ModelError, match="rotary"):
        create_model(weights=rope)
    first = "vim_tiny_patch16_224_bimambav2_final_pool_mean_abs_pos_embed_with_cls_token_div2"
    with pytest.raises(ModelError, match="class token at the start"):
        create_model(weights=write_official(tmp_path / "c0.pth", state, model=first))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        create_model(weights=junk)
    with pytest.raises(ModelError, match="not found"):
        create_model(weights=tmp_path / "missing.pth")


def test_vimscope_safetensors_round_trip_with_the_config_embedded(tmp_path):
    torch.manual_seed(0)
    model = create_model("vim_test_nuclei", tile=256)
    path = save_weights(model, tmp_path / "m.safetensors", metadata={"epoch": 7})
    spec = load_spec(path)
    assert spec == model.spec and spec.tile == 256
    again = create_model(weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), again(x)
    assert a.keys() == b.keys() == {"logits", "boundary", "distance"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    half = create_model(weights=save_weights(model, tmp_path / "h.safetensors", dtype=torch.float16))
    assert half.backbone.pos_embed.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(half(x)["logits"], a["logits"], atol=5e-2)


def test_checkpoint_filter_fn_is_pure_and_maps_onto_the_model():
    state = official_state_dict(32, 2, 3, d_state=4, grid=4)
    before = {k: v.clone() for k, v in state.items()}
    model = VisionMamba(img_size=[96, 128], embed_dim=32, depth=2, d_state=4)  # headless, 6 x 8 grid
    out = checkpoint_filter_fn({"model": state}, model)
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)
    assert not any(k.startswith("head.") for k in out)
    assert out["pos_embed"].shape == (1, 6 * 8 + 1, 32)
    model.load_state_dict(out, strict=True)


def test_pos_embed_resampling_keeps_the_middle_class_row():
    torch.manual_seed(0)
    pos = torch.randn(1, 14 * 14 + 1, 8)
    assert resample_abs_pos_embed(pos, (14, 14)) is pos  # identity at the training size
    cls = pos[:, 98]
    wide = resample_abs_pos_embed(pos, (20, 31))  # non-square
    assert wide.shape == (1, 20 * 31 + 1, 8)
    assert torch.equal(wide[:, (20 * 31) // 2], cls)
    patches = torch.cat([pos[:, :98], pos[:, 99:]], 1).reshape(1, 14, 14, 8)
    corner = wide[:, 0]  # bicubic without the class row: a neighbour of the old top-left patch, not of the cls
    assert (corner - patches[0, 0, 0]).norm() < (corner - cls).norm()


def test_pos_embed_round_trip_on_a_smooth_embedding():
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 14), indexing="ij")
    freqs = torch.arange(1, 5).float()
    grid = torch.cat([torch.sin(math.pi * freqs * ys[..., None]), torch.cos(math.pi * freqs * xs[..., None])], -1)
    flat = grid.reshape(1, 196, 8)
    pos = torch.cat([flat[:, :98], torch.full((1, 1, 8), 7.0), flat[:, 98:]], 1)
    back = resample_abs_pos_embed(resample_abs_pos_embed(pos, (28, 28)), (14, 14))
    assert torch.equal(back[:, 98], pos[:, 98])
    err = (back - pos).norm() / pos.norm()
    assert err < 0.03, err


def test_a_vimscope_checkpoint_follows_an_img_size_override_and_packaged_weights_load(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_model("vim_test")
    path = save_weights(model, tmp_path / "t.safetensors")
    bigger = create_model(weights=path, img_size=128)  # pos embed resampled 4x4 -> 8x8, class row kept
    pos = bigger.backbone.pos_embed
    assert pos.shape == (1, 65, 32) and torch.equal(pos[:, 32], model.backbone.pos_embed[:, 8])
    import vimscope.models.registry as registry

    config = dataclasses.asdict(model.spec) | {"weights": "t.safetensors"}  # a model config naming shipped weights
    (tmp_path / "shipped.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr(registry, "packaged_weights_path", lambda spec: tmp_path / spec.weights)
    shipped = create_model(tmp_path / "shipped.yaml")
    assert all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), model.state_dict().values()))
