"""One factory for every family: the built-in ones (Vim, pointwise, U-Net) and one registered from outside."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from torch import nn

import vimscope.models
from vimscope.config import ModelSpec
from vimscope.errors import ConfigError, ModelError
from vimscope.models import UNet, create_model, list_families, load_spec, register_family, save_weights
from vimscope.models.families import get_family

UNET = {
    "name": "unet_tiny",
    "family": "unet",
    "arch": {"base": 4, "depth": 2},
    "head": {"extra_maps": {"boundary": 1}},
    "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "nucleus", "color": [230, 25, 75]}],
    "output": "nuclei",
    "tile": 64,
    "halo": 8,
}


def _yaml(tmp_path, data: dict, name: str = "m.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_unet_is_built_by_create_model_with_its_contract_and_round_trips(tmp_path):
    path = _yaml(tmp_path, UNET)
    spec = load_spec(path)
    assert spec.size_multiple == 4 and spec.arch == {"base": 4, "depth": 2}  # set by the family's contract
    model = create_model(path, depth=3)  # an override goes into the family's arch
    assert isinstance(model, UNet) and model.spec.size_multiple == 8 and not model.training
    out = model(torch.rand(1, 3, 64, 64))
    assert set(out) == {"logits", "boundary"} and out["logits"].shape == (1, 2, 64, 64)
    assert model.forward_features(torch.rand(1, 3, 64, 64)).shape == (1, 4, 64, 64)  # timm's split kept
    saved = save_weights(model, tmp_path / "u.safetensors", dtype=torch.float16)
    again = create_model(weights=saved)
    assert isinstance(again, UNet) and next(again.parameters()).dtype == torch.float32
    with torch.no_grad():
        a, b = model(torch.rand(1, 3, 64, 64).fill_(0.5)), again(torch.rand(1, 3, 64, 64).fill_(0.5))
    assert torch.allclose(a["logits"], b["logits"], atol=2e-2)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"arch": {"base": 4, "width": 3}}, "unknown config key arch.width"),
        ({"arch": {"base": 0}}, "base > 0"),
        ({"head": {"type": "linear", "decoder_channels": [8]}}, "head.decoder_channels"),
        ({"classes": []}, "needs its classes"),
        ({"tile": 66}, "not a multiple of the token stride 4"),
        ({"family": "nosuchfamily"}, "unknown model family 'nosuchfamily'"),
    ],
)
def test_a_bad_family_spec_is_a_model_error_naming_the_key(tmp_path, change, message):
    with pytest.raises(ModelError, match=message):
        load_spec(_yaml(tmp_path, {**UNET, **change}))


class _Toy(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.conv = nn.Conv2d(spec.in_chans, len(spec.classes), 1)

    def forward(self, x):
        return {"logits": self.conv(x)}


def _toy_contract(spec: ModelSpec) -> None:
    if set(spec.arch) - {"stride"}:
        raise ConfigError("the toy family takes arch.stride only")
    spec.size_multiple = int(spec.arch.get("stride", 1))


def test_a_registered_family_plugs_into_the_one_factory(tmp_path):
    register_family("toy_registered", _Toy, contract=_toy_contract)
    assert "toy_registered" in list_families()
    path = _yaml(tmp_path, {**UNET, "family": "toy_registered", "arch": {"stride": 8}, "head": {}})
    model = create_model(path)
    assert isinstance(model, _Toy) and model.spec.size_multiple == 8 and not model.training
    with pytest.raises(ModelError, match="arch.stride only"):
        load_spec(_yaml(tmp_path, {**UNET, "family": "toy_registered", "arch": {"depth": 2}}, "bad.yaml"))
    reloaded = create_model(weights=save_weights(model, tmp_path / "toy.safetensors"))
    assert torch.equal(reloaded.conv.weight, model.conv.weight)


def test_a_family_module_named_after_the_family_registers_itself_on_first_use(tmp_path, monkeypatch):
    """``family: X`` imports ``vimscope.models.X``; here the module lies in an extra folder of the package path."""
    (tmp_path / "toy_found.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            from vimscope.models.families import register_family


            class Toy(nn.Module):
                def __init__(self, spec):
                    super().__init__()
                    self.spec = spec
                    self.w = nn.Parameter(torch.ones(1))

                def forward(self, x):
                    return {"logits": x * self.w}


            register_family("toy_found", Toy)
            """
        )
    )
    monkeypatch.setattr(vimscope.models, "__path__", [*vimscope.models.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "vimscope.models.toy_found", raising=False)
    model = create_model(_yaml(tmp_path, {**UNET, "family": "toy_found", "arch": {}, "head": {}}))
    assert type(model).__name__ == "Toy" and get_family("toy_found").name == "toy_found"


def test_the_builtin_families_check_specs_without_torch(tmp_path):
    code = (
        "import sys\n"
        "from vimscope.models import load_spec, list_families\n"
        f"s = load_spec({str(_yaml(tmp_path, UNET))!r})\n"
        "print(s.size_multiple, ','.join(list_families()), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "pointwise,unet,vim", "False"]
