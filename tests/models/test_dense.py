"""Dense use: output maps, intermediates, gradients, bf16 autocast, exact stitching of the pointwise model."""

from __future__ import annotations

import pytest
import torch

from vimscope.errors import ModelError
from vimscope.models import VisionMamba, create_model


def test_segmentation_outputs_are_at_input_resolution():
    torch.manual_seed(0)
    model = create_model("vim_test_nuclei")
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        feats = model.features(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (2, 2, 64, 96),
        "boundary": (2, 1, 64, 96),
        "distance": (2, 1, 64, 96),
    }
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    assert feats.shape == (2, 32, 4, 6)


@pytest.mark.parametrize("head", ["linear", "features", "unetr"])
def test_every_head_on_a_small_vim(head):
    torch.manual_seed(0)
    overrides = {"head": {"type": head}, "output": "features" if head == "features" else "classes"}
    if head == "unetr":  # same head type: merged into vim_test's; default blocks for the new depth
        overrides.update(head={"type": "unetr", "indices": None}, classes=["a", "b", "c"])
    model = create_model("vim_test", depth=2, **overrides)
    if head == "unetr":
        assert model.head.indices == [0, 1] and model.spec.classes[2].name == "c"
    with torch.no_grad():
        out = model(torch.randn(1, 3, 48, 80))
    expected = {"linear": ("logits", (1, 2, 48, 80)), "features": ("features", (1, 32, 3, 5))}
    expected["unetr"] = ("logits", (1, 3, 48, 80))
    key, shape = expected[head]
    assert list(out) == [key] and out[key].shape == shape


def test_forward_features_and_intermediates_geometry():
    torch.manual_seed(0)
    vim = VisionMamba(img_size=64, embed_dim=32, depth=3, d_state=4).eval()
    x = torch.randn(1, 3, 80, 48)
    with torch.no_grad():
        feats = vim.forward_features(x)
        inter = vim.forward_intermediates(x, [0, -1])
        normed = vim.forward_intermediates(x, 1, norm=True)
    assert feats.shape == (1, 32, 5, 3)
    assert [t.shape for t in inter] == [(1, 32, 5, 3)] * 2 and all(t.dtype == torch.float32 for t in inter)
    assert torch.allclose(normed[0], feats, atol=1e-6)  # last block, normed == forward_features
    assert not torch.allclose(inter[0], inter[1])
    with pytest.raises(ValueError, match="multiples of 16"):
        vim.forward_features(torch.randn(1, 3, 72, 48))
    with pytest.raises(ValueError, match="out of range"):
        vim.forward_intermediates(x, [3])


def test_overlapping_patches_give_a_grid_of_exactly_h_over_stride():
    torch.manual_seed(0)
    vim = VisionMamba(img_size=64, patch_size=16, stride=8, embed_dim=32, depth=1, d_state=4).eval()
    with torch.no_grad():
        assert vim.forward_features(torch.randn(1, 3, 64, 40)).shape == (1, 32, 8, 5)
        assert vim(torch.randn(1, 3, 64, 64), return_features=True).shape == (1, 32)  # official path: no padding


def test_a_wrong_tile_size_is_a_model_error():
    model = create_model("vim_test")
    with pytest.raises(ModelError, match="multiples of 16"):
        model(torch.randn(1, 3, 40, 64))
    with pytest.raises(ModelError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 4, 64, 64))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = create_model("vim_test_nuclei").train()
    x = torch.randn(2, 3, 32, 48)
    out = model(x)
    loss = sum((v.float() ** 2).mean() for v in out.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_autocast_agrees_with_float32_and_keeps_residual_and_scan_in_float32(monkeypatch):
    torch.manual_seed(0)
    model = create_model("vim_test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)["logits"]
        seen = []
        import vimscope.models.mixer as mixer_module

        real = mixer_module.bimamba_inner

        def spy(xz, *params):
            seen.append((xz.dtype, {p.dtype for p in params}, torch.is_autocast_enabled("cpu")))
            return real(xz, *params)

        monkeypatch.setattr(mixer_module, "bimamba_inner", spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)["logits"]
            embedded, _, _ = model.backbone._embed(x, dense=True)
            hidden, residual = model.backbone.layers[0](embedded, None)
            hidden, residual = model.backbone.layers[1](hidden, residual)
    assert hidden.dtype == torch.bfloat16 and residual.dtype == torch.float32
    assert seen and all(s == (torch.float32, {torch.float32}, False) for s in seen)
    err = ((low.float() - ref).norm() / ref.norm()).item()
    assert err < 0.05, err


def test_pointwise_model_is_per_pixel_so_tiles_equal_the_whole_image():
    model = create_model("vim_test_pointwise")
    again = create_model("vim_test_pointwise")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # fixed seed
    x = torch.randn(1, 3, 200, 136)
    with torch.no_grad():
        whole = model(x)["logits"]
        tiled = torch.full_like(whole, float("nan"))
        for y0 in range(0, 200, 64):
            for x0 in range(0, 136, 48):
                tile = x[..., y0 : y0 + 64, x0 : x0 + 48]
                tiled[..., y0 : y0 + 64, x0 : x0 + 48] = model(tile)["logits"]
    assert whole.shape == (1, 3, 200, 136)
    assert torch.equal(tiled, whole)
    assert whole.std() > 0.1  # not a constant map


@pytest.mark.parametrize("name", ["vim_test", "vim_ssd_test"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("norm", ["reference", "triton"])
def test_inference_updates_the_stream_in_place_with_the_same_values(name, dtype, norm, monkeypatch):
    """Without gradients the blocks write the norm and the residual over the stream (no second copy per block):
    the same features, intermediates and logits as with gradients enabled (the kernels chosen are the same:
    no parameter needs a gradient), with the Triton norm (interpreter; CUDA's default) and the reference."""
    import functools

    from vimscope.models import mixer

    monkeypatch.setattr(mixer, "add_rmsnorm", functools.partial(mixer.add_rmsnorm, backend=norm))
    torch.manual_seed(2)
    model = create_model(name).to(dtype).eval().requires_grad_(False)
    x = torch.randn(2, 3, 64, 48, dtype=dtype)
    with torch.enable_grad():
        copied = model(x)["logits"], model.backbone.forward_intermediates(x, [0, 1])
    with torch.inference_mode():
        inplace = model(x)["logits"], model.backbone.forward_intermediates(x, [0, 1])
    assert torch.equal(inplace[0], copied[0])
    assert all(torch.equal(a, b) for a, b in zip(inplace[1], copied[1], strict=True))
