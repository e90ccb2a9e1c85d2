"""The preview's legend prints the run's shares (the summary's full-resolution fractions), not a recount of the
coarse class map it draws."""

from __future__ import annotations

import numpy as np

from vimscope.config import ClassSpec
from vimscope.writers.preview import render_preview

CLASSES = [ClassSpec("Background", (0, 0, 0)), ClassSpec("Nucleus", (255, 0, 0))]


def test_the_legend_prints_the_given_shares():
    thumb = np.full((64, 64, 3), 230, np.uint8)
    coarse = np.zeros((64, 64), np.uint8)
    coarse[:8] = 1  # 12.5 % on the coarse map
    recount = np.asarray(render_preview(thumb, coarse, CLASSES))
    same = np.asarray(render_preview(thumb, coarse, CLASSES, shares={"Background": 0.875, "Nucleus": 0.125}))
    summary = np.asarray(render_preview(thumb, coarse, CLASSES, shares={"Background": 0.954, "Nucleus": 0.046}))
    assert np.array_equal(recount, same)  # without shares the legend counts the map it was given
    legend = (slice(None), slice(64, None))
    assert not np.array_equal(recount[legend], summary[legend])  # 4.6 % is printed, not the coarse 12.5 %
    assert np.array_equal(recount[:, :64], summary[:, :64])  # the overlay itself is the same
