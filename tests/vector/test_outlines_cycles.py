"""The tracer's cycle walk (``outlines._cycles``): each edge's ring is the smallest index on its cycle and its
position the steps from there, as a plain walk over a permutation says."""

from __future__ import annotations

import numpy as np

from vimscope.vector.outlines import _cycles


def plain(succ):
    ring, dist = [-1] * len(succ), [0] * len(succ)
    for i in range(len(succ)):
        if ring[i] < 0:
            j, k = i, 0
            while ring[j] < 0:
                ring[j], dist[j], k, j = i, k, k + 1, int(succ[j])
    return ring, dist


def test_cycles_of_random_permutations():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1000):
        succ = rng.permutation(n).astype(np.int64)
        ring, dist = _cycles(succ)
        want_ring, want_dist = plain(succ)
        assert ring.tolist() == want_ring and dist.tolist() == want_dist
        for r in np.unique(ring):  # the last edge of each ring leads back to its first
            edges = np.flatnonzero(ring == r)
            assert succ[edges[np.argmax(dist[edges])]] == r
