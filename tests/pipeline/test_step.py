"""The tile loop's forward pass: a CUDA graph replay gives the eager pass's outputs; without CUDA it is the eager
pass. The ``gpu`` tests capture the shipped model (Triton scan kernels inside the graph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.io.conftest import smooth_image
from tests.io.jpegtiff import write_jpeg_tiff
from tests.pipeline.helpers import read_store
from vimscope.models import create_model
from vimscope.pipeline.model import LoadedModel
from vimscope.pipeline.step import ModelStep, forward


def _loaded(name: str, device: str, dtype=torch.float32) -> LoadedModel:
    module = create_model(name).to(device).eval()
    return LoadedModel(module, module.spec, torch.device(device), dtype, name, [])


def _batch(spec, n: int, seed: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, spec.in_chans, spec.tile, spec.tile), generator=g).to(device)


def test_on_the_cpu_the_step_is_the_eager_pass():
    lm = _loaded("vim_test_nuclei", "cpu")
    step = ModelStep(lm, segmentation=True, features=False, graphs=True)
    x = _batch(lm.spec, 2, 0, "cpu")
    got, want = step(x), forward(lm, x, True, False)
    assert not step.graphs and step.replays == 0
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.gpu
@pytest.mark.parametrize("features", [False, True])
def test_graph_replays_equal_the_eager_pass(features):
    lm = _loaded("vim_tiny_nuclei", "cuda", torch.bfloat16)
    step = ModelStep(lm, segmentation=True, features=features, graphs=True)
    outs = []
    for seed in (0, 1, 2):  # capture at the first, then replays on new inputs
        x = _batch(lm.spec, 8, seed, "cuda")
        outs.append((step(x), forward(lm, x, True, features)))
    assert step.graphs and step.replays == 3
    first = outs[0][0]
    for got, want in outs:
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), k
    assert not torch.equal(outs[1][0]["logits"], first["logits"])  # the replay read its new input
    assert torch.equal(first["logits"], outs[0][1]["logits"])  # outputs are copies: later replays left them alone


@pytest.mark.gpu
def test_pipeline_outputs_do_not_depend_on_cuda_graphs(tmp_path):
    from vimscope.pipeline import run

    slide = write_jpeg_tiff(tmp_path / "s.tif", smooth_image(700, 900, seed=4), tile=256, photometric="ycbcr")
    base = {"outputs": ["image", "classes", "probabilities", "summary"], "tissue": False, "device": "cuda", "mpp": 0.25}
    a = run(slide, {**base, "cuda_graphs": False}, out=tmp_path / "eager")
    b = run(slide, {**base, "cuda_graphs": True}, out=tmp_path / "graph")
    sa, sb = read_store(a.paths["zarr"]), read_store(b.paths["zarr"])
    assert sa.keys() == sb.keys() and "probabilities" in sa
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k
