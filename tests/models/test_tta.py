"""Test-time augmentation: transforms mapped back exactly, an equivariant model unchanged, a real one averaged."""

from __future__ import annotations

import torch
from torch import nn

from vimscope.models import create_model
from vimscope.models.tta import TestTimeAugmented, _forward, _inverse, dihedral


def test_every_transform_is_undone_exactly():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    seen = set()
    for turns, flip in dihedral(square=True):
        y = _forward(x, turns, flip)
        assert torch.equal(_inverse(y, turns, flip), x)
        seen.add(tuple(y[0, 0].flatten().tolist()))
    assert len(seen) == 8  # eight distinct images of a generic tile
    assert len(dihedral(square=False)) == 4 and all(t in (0, 2) for t, _ in dihedral(square=False))


class _Pointwise(nn.Module):
    """A per-pixel model: equivariant under every transform, so TTA must return its output unchanged."""

    def forward(self, x):
        return {"logits": torch.stack([x[:, 0] * 2, -x[:, 1]], 1), "distance": x[:, 2:3] ** 2}


class _Shifted(nn.Module):
    """Looks one pixel to the right: not equivariant, so TTA averages over the four neighbours' directions."""

    def forward(self, x):
        return torch.roll(x[:, :1], shifts=-1, dims=-1)


def test_equivariant_model_is_unchanged_and_a_biased_one_is_averaged():
    x = torch.randn(2, 3, 8, 8)
    plain, tta = _Pointwise()(x), TestTimeAugmented(_Pointwise())(x)
    assert set(tta) == {"logits", "distance"}
    for k in plain:
        torch.testing.assert_close(tta[k], plain[k])
    y = TestTimeAugmented(_Shifted())(x)
    v = x[:, :1]
    expected = sum(torch.roll(v, s, d) for s in (-1, 1) for d in (-1, -2)) / 4  # 4 directions, twice each
    torch.testing.assert_close(y, expected)
    rect = torch.randn(1, 3, 8, 12)
    y = TestTimeAugmented(_Shifted())(rect)
    w = rect[:, :1]
    torch.testing.assert_close(y, (torch.roll(w, -1, -1) + torch.roll(w, 1, -1)) / 2)  # flips only


def test_tta_on_a_segmentation_model_keeps_its_contract():
    model = create_model("vim_test_nuclei").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        plain, tta = model(x), TestTimeAugmented(model)(x)
    y_plain = plain if isinstance(plain, dict) else {"logits": plain}
    y_tta = tta if isinstance(tta, dict) else {"logits": tta}
    assert y_plain.keys() == y_tta.keys()
    for k in y_plain:
        assert y_tta[k].shape == y_plain[k].shape and y_tta[k].dtype == y_plain[k].dtype
        assert not torch.allclose(y_tta[k], y_plain[k])  # a learned model is not exactly equivariant
    assert TestTimeAugmented(model).spec is model.spec


def test_pipeline_runs_the_augmented_model_and_keys_it():
    from vimscope.pipeline.config import PipelineConfig
    from vimscope.pipeline.donekey import output_settings, settings_key
    from vimscope.pipeline.model import load_model
    from vimscope.pipeline.step import forward

    plain = load_model(PipelineConfig(model="vim_test_nuclei", device="cpu"))
    tta = load_model(PipelineConfig(model="vim_test_nuclei", device="cpu", tta=True))
    assert isinstance(tta.module, TestTimeAugmented) and not isinstance(plain.module, TestTimeAugmented)
    assert tta.spec is plain.spec or tta.spec == plain.spec
    x = torch.randn(2, 3, 64, 64)
    a = forward(plain, x, segmentation=True, features=False)
    b = forward(tta, x, segmentation=True, features=False)
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert "tta" not in output_settings(PipelineConfig())  # off: the key of outputs written before the option
    assert settings_key(PipelineConfig(tta=True)) != settings_key(PipelineConfig())


def test_cli_flag_turns_it_on():
    from vimscope.cli.segment import build_config

    assert build_config(tta=True).tta and not build_config(tta=False).tta
