"""The compiled value counts the summary's class pixels come from, against ``np.bincount``."""

import numpy as np
import pytest

from vimscope.writers.histogram import value_counts


@pytest.mark.parametrize("shape", [(0,), (1,), (7, 5), (3, 513, 511)])
def test_value_counts_match_bincount(shape):
    rng = np.random.default_rng(len(shape))
    block = rng.integers(0, 256, shape, dtype=np.uint8)
    block.flat[: min(block.size, 9)] = 255  # the top value counted too
    expected = np.bincount(block.ravel(), minlength=256)
    got = value_counts(block)
    assert got.dtype == np.int64 and got.shape == (256,)
    np.testing.assert_array_equal(got, expected)


def test_value_counts_reads_strided_views():
    block = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)[::3, 1::2]
    np.testing.assert_array_equal(value_counts(block), np.bincount(block.ravel(), minlength=256))


def test_value_counts_refuse_wider_labels():
    with pytest.raises(TypeError):
        value_counts(np.zeros(4, np.uint16))
