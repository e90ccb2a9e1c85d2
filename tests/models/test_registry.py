"""Registry and configs: names, IO contracts, overrides, official parameter counts, no torch for specs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vimscope.config import ModelSpec
from vimscope.errors import ModelError
from vimscope.models import VisionMamba, create_model, list_models, load_spec
from vimscope.models.arch import parse_arch

VARIANTS = ["vim_tiny", "vim_small", "vim_base", "vim_tiny_s8", "vim_small_s8"]


def test_every_required_variant_is_registered_with_a_valid_io_contract():
    names = list_models()
    assert set(VARIANTS + ["vim_test", "vim_test_pointwise"]) <= set(names)
    for name in names:
        spec = load_spec(name)
        assert isinstance(spec, ModelSpec) and spec.name == name
        assert spec.tile % spec.size_multiple == 0 and spec.tile > 2 * spec.halo
        assert spec.output in ("classes", "nuclei", "features")
        assert spec.license and len(spec.mean) == len(spec.std) == spec.in_chans
        if spec.output != "features":
            assert spec.classes and all(len(c.color) == 3 for c in spec.classes)
    assert load_spec("vim_tiny_s8").size_multiple == 8 and load_spec("vim_base").size_multiple == 16


@pytest.mark.parametrize(
    "name,expected",
    [("vim_tiny", 7_148_008), ("vim_small", 25_796_584), ("vim_base", 97_598_440)],
)
def test_parameter_counts_match_the_official_models(name, expected):
    arch = parse_arch({**load_spec(name).arch, "num_classes": 1000})
    with torch.device("meta"):  # shapes only, no memory or init time
        model = VisionMamba.from_arch(arch)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_overrides_reach_the_spec_and_the_architecture():
    model = create_model(
        "vim_tiny",
        depth=2,
        img_size=64,
        head={"type": "linear"},
        output="classes",
        classes=["background", "tumour"],
        tile=512,
        mpp=0.5,
    )
    spec = model.spec
    assert (spec.arch["depth"], spec.arch["img_size"], spec.tile, spec.mpp) == (2, [64, 64], 512, 0.5)
    assert [c.name for c in spec.classes] == ["background", "tumour"] and spec.classes[1].color != [0, 0, 0]
    assert len(model.backbone.layers) == 2 and model.backbone.pos_embed.shape == (1, 17, 192)
    assert not model.training


def test_unusable_names_and_options_are_model_errors():
    with pytest.raises(ModelError, match="unknown model 'vim_huge' \\(known: .*vim_tiny"):
        create_model("vim_huge")
    with pytest.raises(ModelError, match="unknown model option 'depht'"):
        create_model("vim_test", depht=3)
    with pytest.raises(ModelError, match="arch.depth: expected an integer"):
        create_model("vim_test", depth="deep")
    with pytest.raises(ModelError, match="needs classes"):
        create_model("vim_test", classes=[])
    with pytest.raises(ModelError, match="not a multiple of the token stride"):
        create_model("vim_test", tile=120)
    with pytest.raises(ModelError, match="model name or a weights file"):
        create_model()


def test_specs_are_read_without_importing_torch(tmp_path):
    torch.manual_seed(0)
    from vimscope.models import save_weights

    path = save_weights(create_model("vim_test_pointwise"), tmp_path / "p.safetensors")
    code = (
        "import sys\n"
        "from vimscope.models import load_spec, list_models\n"
        f"s = load_spec({str(path)!r}); t = load_spec('vim_tiny'); n = list_models()\n"
        "print(s.name, t.arch['embed_dim'], 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["vim_test_pointwise", "192", "False"]
