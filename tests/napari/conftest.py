"""Fixtures of the napari plugin tests: small synthetic slides made once per session (no network)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory):
    """A 512 x 384 H&E-like pyramidal OME-TIFF at 2 µm/px (tissue islands large enough for the tissue mask)."""
    from vimscope.synthetic import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("slides") / "small.ome.tif", height=384, width=512, mpp=2.0, seed=1, tissue_scale=24
    )


@pytest.fixture(scope="session")
def medium_slide(tmp_path_factory):
    """A 1024 x 768 synthetic slide at 2 µm/px: enough tiles at tile 64 for a run to be cancelled half-way."""
    from vimscope.synthetic import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("slides") / "medium.ome.tif", height=768, width=1024, mpp=2.0, seed=2, tissue_scale=32
    )


@pytest.fixture(scope="session")
def colour_model():
    """A deterministic stand-in for a trained model (the shipped test models are random): classes from colour.

    Background = bright glass, nuclei = dark purple, tissue = the rest; carries a ModelSpec like every model.
    """
    import torch

    from vimscope.config import ClassSpec, ModelSpec

    class ColourModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.spec = ModelSpec(
                name="test_colour",
                tile=64,
                halo=8,
                mean=[0.0, 0.0, 0.0],
                std=[1.0, 1.0, 1.0],
                classes=[
                    ClassSpec("background", [0, 0, 0]),
                    ClassSpec("tissue", [255, 200, 0]),
                    ClassSpec("nucleus", [0, 120, 255]),
                ],
                trained=True,
            )

        def forward(self, x):  # x: (B, 3, H, W) in 0-1
            brightness = x.mean(dim=1)
            glass = (brightness - 0.85) * 40
            nucleus = (0.45 - brightness) * 40
            tissue = torch.zeros_like(brightness)
            return {"logits": torch.stack([glass, tissue, nucleus], dim=1)}

    return ColourModel()
