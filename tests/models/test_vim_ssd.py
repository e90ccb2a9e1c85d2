"""The SSD-mixer Vim (family vim_ssd): the dense contract, the Triton and CPU paths of its mixer, gradients,
configs and safetensors checkpoints. The tiny ``vim_ssd_test`` config keeps this fast on a CPU."""

from __future__ import annotations

import pytest
import torch

from vimscope.errors import ModelError
from vimscope.models import create_model, load_spec, save_weights
from vimscope.models.vim_ssd import SSDMixer, VimSSD


def set_backend(model, backend):
    for module in model.modules():
        if isinstance(module, SSDMixer):
            module.backend = backend


def test_dense_outputs_and_token_grids():
    model = create_model("vim_ssd_test")
    assert isinstance(model.backbone, VimSSD) and model.spec.size_multiple == 16
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        out = model(x)
        grids = model.backbone.forward_intermediates(x, [0, -1], norm=True)
        features = model.backbone.forward_features(x)
    assert out.keys() == {"logits"} and out["logits"].shape == (2, 2, 96, 64)
    assert [g.shape for g in grids] == [(2, 32, 6, 4)] * 2
    assert torch.allclose(grids[-1], features, atol=1e-5)
    assert torch.isfinite(out["logits"]).all()


def test_packaged_configs_build():
    tiny = load_spec("vim_ssd_tiny")
    assert tiny.family == "vim_ssd" and tiny.arch["headdim"] == 64 and tiny.arch["d_state"] == 64
    model = create_model("vim_ssd_tiny", depth=2)
    mixer = model.backbone.layers[0].mixer
    assert (mixer.nheads, mixer.headdim, mixer.d_state) == (6, 64, 64)
    assert load_spec("vim_ssd_small").arch["embed_dim"] == 384
    with pytest.raises(ModelError, match="headdim"):
        create_model("vim_ssd_test", headdim=24)


def test_triton_path_matches_the_cpu_path():
    """The mixer's Triton kernels (interpreter here) and the chunked PyTorch form give the same model."""
    torch.manual_seed(0)
    model = create_model("vim_ssd_test")
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        set_backend(model, "torch")
        cpu = model(x)["logits"]
        set_backend(model, "triton")
        fast = model(x)["logits"]
    assert ((fast - cpu).norm() / cpu.norm()).item() < 1e-4


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradients_reach_every_parameter(backend):
    torch.manual_seed(1)
    model = create_model("vim_ssd_test").train()
    set_backend(model, backend)
    out = model(torch.randn(2, 3, 64, 64))["logits"]
    out.square().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("backbone.layers.") or name in ("backbone.pos_embed", "backbone.patch_embed.proj.weight"):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_safetensors_round_trip(tmp_path):
    model = create_model("vim_ssd_test", tile=256)
    path = save_weights(model, tmp_path / "ssd.safetensors")
    spec = load_spec(path)
    assert spec.family == "vim_ssd" and spec == model.spec
    again = create_model(weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)["logits"], again(x)["logits"])


def test_mamba_mixer_weights_do_not_fit(tmp_path):
    vim = create_model("vim_test")
    path = save_weights(vim, tmp_path / "vim.safetensors")
    with pytest.raises(ModelError):
        create_model("vim_ssd_test", weights=path)


@pytest.mark.gpu
def test_cuda_kernels_match_the_cpu_path_with_gradients():
    """vim_ssd_tiny on CUDA, float32: the Triton mixer against the chunked PyTorch form, features and the gradient
    of every parameter. The loss is a fixed random projection of the features: mean(features ** 2) of RMS-normed
    features is nearly constant, and its gradient is rounding noise (1.5e-2 between float32 and float64 even on
    the PyTorch path)."""
    torch.manual_seed(2)
    model = create_model("vim_ssd_tiny", depth=4).cuda().train()
    x = torch.randn(2, 3, 256, 320, device="cuda")
    with torch.no_grad():
        probe = torch.randn_like(model(x)["features"])
    results = {}
    for backend in ("triton", "torch"):
        set_backend(model, backend)
        model.zero_grad()
        features = model(x)["features"]
        (features * probe).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[backend] = features.detach(), grads
    (f_fast, g_fast), (f_ref, g_ref) = results["triton"], results["torch"]
    assert ((f_fast - f_ref).norm() / f_ref.norm()).item() < 1e-4  # float32 inputs: tf32x3 dots, near float32
    assert g_fast.keys() == g_ref.keys() and any(".mixer.in_proj." in n for n in g_ref)
    errors = {n: ((g_fast[n] - g_ref[n]).norm() / g_ref[n].norm()).item() for n in g_ref}
    assert max(errors.values()) < 1e-4, sorted(errors.items(), key=lambda kv: -kv[1])[:5]
