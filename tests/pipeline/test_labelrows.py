"""``LabelRows``: instance windows painted in order in memory, chunk rows written once, the values of painting
each window straight into the full map."""

import numpy as np
import pytest

from vimscope.pipeline.labelrows import LabelRows
from vimscope.types import Box


class Store:
    """The two calls ``LabelRows`` makes of a writer, into one array; counts the writes of each row."""

    def __init__(self, shape):
        self.data = np.full(shape, 7, np.uint32)  # a stale value every write must replace
        self.writes = np.zeros(shape[0], int)

    def write_block(self, name, box, block):
        assert name == "nuclei" and block.dtype == np.uint32 and block.shape == (box.h, box.w)
        self.data[box.y : box.y1, box.x : box.x1] = block
        self.writes[box.y : box.y1] += 1


def test_windows_painted_in_order_equal_the_direct_painting():
    h, w, chunk, margin = 300, 90, 32, 12
    rng = np.random.default_rng(0)
    store, expected = Store((h, w)), np.zeros((h, w), np.uint32)
    rows = LabelRows(store, "nuclei", (h, w), chunk)
    cells = [(y, min(70, h - y)) for y in range(0, h, 70)]
    for k, (y, ch) in enumerate(cells):
        y0, y1 = max(0, y - margin), min(h, y + ch + margin)
        window = Box(3, y0, w - 3, y1 - y0)
        labels = rng.integers(0, 6, (window.h, window.w)).astype(np.int32)
        table = np.array([0, 0, 100 * k + 2, 100 * k + 3, 0, 100 * k + 5], np.uint32)  # 1 and 4: other cells'
        painted = table[labels]
        region = expected[window.y : window.y1, window.x : window.x1]
        np.copyto(region, painted, where=painted > 0)
        rows.paint(window, labels, table)
        next_top = max(0, cells[k + 1][0] - margin) if k + 1 < len(cells) else h
        rows.release(next_top)
        assert rows.top <= next_top and rows.top % chunk == 0 or rows.top == h
    np.testing.assert_array_equal(store.data, expected)
    assert (store.writes == 1).all() and not rows.blocks


def test_painting_above_the_released_rows_is_refused():
    rows = LabelRows(Store((100, 10)), "nuclei", (100, 10), 32)
    rows.paint(Box(0, 0, 10, 50), np.ones((50, 10), np.int32), np.array([0, 1], np.uint32))
    rows.release(40)
    assert rows.top == 32
    with pytest.raises(ValueError):
        rows.paint(Box(0, 20, 10, 10), np.ones((10, 10), np.int32), np.array([0, 1], np.uint32))
