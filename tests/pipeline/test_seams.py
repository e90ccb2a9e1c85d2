"""Seams: tiled output equals the whole-image output exactly for a per-pixel model, in every stitch mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.pipeline.helpers import read_store, whole_image_outputs
from vimscope.pipeline import PipelineConfig, run


@pytest.fixture(scope="module")
def pointwise():
    from vimscope.models import create_model

    return create_model("vim_test_pointwise")


def config(**kw) -> PipelineConfig:
    """Small tiles and chunks that do not line up (core 96, chunk 128), several stripes and bands."""
    base = dict(
        model="vim_test_pointwise",
        device="cpu",
        precision="float32",  # exact comparisons with a float32 whole-image reference (auto: bf16 on some CPUs)
        tile=128,
        halo=16,
        chunk=128,
        stripe_width=320,
        band_height=192,
        tissue=False,
        outputs=["image", "classes", "probabilities"],
        workers=2,
        batch_size=4,
    )
    return PipelineConfig.load(**{**base, **kw})


@pytest.mark.parametrize("mode", ["crop", "cosine", "gaussian"])
def test_tiled_equals_whole_image(mode, small_slide, tmp_path, pointwise):
    result = run(small_slide, config(stitch=mode), out=tmp_path)
    plan_bands = result.summary["tiles"]["bands"]
    assert plan_bands > 4 and result.summary["stitch"] == mode
    got = read_store(result.paths["zarr"])
    ref = whole_image_outputs(small_slide, pointwise)
    assert len(np.unique(ref["classes"])) >= 2  # the comparison means something
    assert np.array_equal(got["classes"], ref["classes"])
    assert np.array_equal(got["probabilities"], ref["probabilities"])
    # the image copy is the model's input, losslessly coded
    assert np.array_equal(got["image"], np.moveaxis(ref["image"], -1, 0))


def test_resampled_tiles_equal_the_resampled_whole_image(small_slide, tmp_path, pointwise):
    """At a non-integer scale (0.5 -> 0.75 µm/px) every tile resamples its pixels exactly as a whole-image read."""
    result = run(small_slide, config(target_mpp=0.75, outputs=["classes", "probabilities"]), out=tmp_path)
    got = read_store(result.paths["zarr"])
    ref = whole_image_outputs(small_slide, pointwise, scale=1.5)
    assert got["classes"].shape == ref["classes"].shape == (467, 600)
    assert np.array_equal(got["classes"], ref["classes"])
    assert np.array_equal(got["probabilities"], ref["probabilities"])


class LocalConvModel(torch.nn.Module):
    """A random CNN whose output depends on pixels at most ``radius`` away (three 5x5 convolutions: radius 6)."""

    radius = 6

    def __init__(self, classes: int = 3):
        super().__init__()
        from vimscope.config import ClassSpec, ModelSpec

        g = torch.Generator().manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, padding=2),
            torch.nn.Tanh(),
            torch.nn.Conv2d(8, 8, 5, padding=2),
            torch.nn.Tanh(),
            torch.nn.Conv2d(8, classes, 5, padding=2),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.spec = ModelSpec(
            name="local_conv", tile=128, halo=16, classes=[ClassSpec(f"c{i}") for i in range(classes)]
        )

    def forward(self, x):
        return {"logits": self.net(x)}


ROUNDING = 3e-4  # mean |error| (levels of 255) that float rounding alone may leave (measured: 9e-5)


def border_and_centre_error(got: np.ndarray, ref: np.ndarray, core: int, edge: int) -> tuple[float, float]:
    """Mean |got - ref| within 3 px of a tile-core edge and in core centres, away from the image border."""
    h, w = ref.shape
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.minimum(np.minimum(yy % core, core - 1 - yy % core), np.minimum(xx % core, core - 1 - xx % core))
    inside = (yy >= edge) & (yy < h - edge) & (xx >= edge) & (xx < w - edge)
    err = np.abs(got.astype(float) - ref.astype(float))
    return err[(d < 3) & inside].mean(), err[(d >= core // 4) & inside].mean()


@pytest.mark.parametrize("mode", ["crop", "cosine", "gaussian"])
def test_local_model_has_no_seams_when_the_halo_covers_its_receptive_field(mode, mini_slide, tmp_path):
    """Crop needs halo >= receptive radius; blending needs its dead margin (halo / 2) >= the radius."""
    model = LocalConvModel()
    ref = whole_image_outputs(mini_slide, model)["probabilities"][0]
    assert ref.std() > 20  # the model really varies
    cfg = config(stitch=mode, outputs=["probabilities"])
    got = read_store(run(mini_slide, cfg, out=tmp_path / "h16", model=model).paths["zarr"])["probabilities"][0]
    border, centre = border_and_centre_error(got, ref, core=96, edge=16)
    # no seams: the tiles agree with the whole-image run up to float rounding (the CPU's convolution kernels are
    # chosen by input size and may round differently: one level of 255 in a few pixels, wherever they fall)
    assert np.abs(got.astype(int) - ref.astype(int))[16:-16, 16:-16].max() <= 1  # away from the image border
    assert border <= ROUNDING and centre <= ROUNDING
    # a halo smaller than the rule asks for leaves seams: the check above can fail
    thin = 8 if mode == "crop" else 10  # crop: 4 < 6; blending: margin 5 < 6
    cfg = config(stitch=mode, outputs=["probabilities"], halo=thin // 2 if mode == "crop" else thin)
    got = read_store(run(mini_slide, cfg, out=tmp_path / "thin", model=model).paths["zarr"])["probabilities"][0]
    border, centre = border_and_centre_error(got, ref, core=128 - 2 * cfg.halo, edge=16)
    assert border > max(centre, ROUNDING)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["crop", "cosine"])
def test_gpu_run_matches_the_cpu_run(mode, small_slide, tmp_path):
    """On CUDA (blending on the device): the class map is identical, probabilities within 1 LSB."""
    cpu = run(small_slide, config(stitch=mode, model="vim_test"), out=tmp_path / "cpu")
    gpu = run(
        small_slide, config(stitch=mode, model="vim_test", device="cuda", precision="float32"), out=tmp_path / "gpu"
    )
    a, b = read_store(cpu.paths["zarr"]), read_store(gpu.paths["zarr"])
    assert np.array_equal(a["classes"], b["classes"])
    assert np.abs(a["probabilities"].astype(int) - b["probabilities"].astype(int)).max() <= 1
