"""PipelineConfig: packaged defaults, YAML files and overrides, every key checked; the progress bar."""

from __future__ import annotations

import io

import pytest

from vimscope.errors import ConfigError
from vimscope.pipeline import PipelineConfig
from vimscope.types import Box, Progress


def test_defaults_files_and_overrides(tmp_path):
    default = PipelineConfig.load()
    assert default.stitch == "crop" and default.tile is None and default.model is None
    f = tmp_path / "run.yaml"
    f.write_text("stitch: cosine\nbatch_size: 8\ntarget_mpp: 1\n")
    cfg = PipelineConfig.load(f, batch_size=2, device=None)  # None overrides keep the file's value
    assert (cfg.stitch, cfg.batch_size, cfg.target_mpp, cfg.device) == ("cosine", 2, 1.0, "auto")
    assert cfg.replace(tile=512).tile == 512 and cfg.digest() != cfg.replace(tile=512).digest()


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"tile_size": 512}, "tile_size"),
        ({"stitch": "average"}, "stitch"),
        ({"device": "gpu"}, "device"),
        ({"tile": 64, "halo": 32}, "halo"),
        ({"batch_size": -1}, "batch_size"),
        ({"outputs": ["classes", "masks"]}, "masks"),
        ({"target_mpp": -1}, "target_mpp"),
        ({"model": "vim_test", "weights": "w.safetensors"}, "model or weights"),
        ({"chunk": 100}, "chunk"),
        ({"tissue": "yes"}, "tissue"),
    ],
)
def test_bad_settings_name_the_key(bad, word):
    with pytest.raises(ConfigError, match=word):
        PipelineConfig.load(**bad)


def test_progress_bar_renders_runs():
    from rich.console import Console

    from vimscope.cli.progress import RunProgress

    for terminal in (True, False):
        buf = io.StringIO()
        console = Console(file=buf, force_terminal=terminal, width=120)
        with RunProgress("slide", console=console, enabled=terminal, log_every=0) as bar:
            bar.update(Progress("plan", 0, 4, message="slide: 4 tiles"))
            for done in (2, 4):
                bar.update(Progress("tiles", done, 4, box=Box(0, 0, 8, 8)))
            bar.update(Progress("write", 0, 1, message="building pyramids"))
            bar.update(Progress("done", 1, 1))
        text = buf.getvalue()
        assert "slide: 4 tiles" in text and "4/4" in text and "tiles/s" in text
