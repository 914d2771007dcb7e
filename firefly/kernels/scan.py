"""Running sums along the middle axis of a contiguous (outer, length, inner) array: cumsum's
forward, and, run from the other end, its backward (a gradient is the reversed running sum of
the output's gradient)."""

import numpy as np
from numba import prange

from firefly.kernels._jit import memory_bound


@memory_bound
def cumsum_along(x, reverse, out):
    """out[o, k, i] = sum of x[o, j, i] for j <= k (j >= k when ``reverse``), summed in float64
    as torch's CPU cumsum accumulates."""
    O, K, I = x.shape
    for o in prange(O):
        acc = np.zeros(I, dtype=np.float64)
        for step in range(K):
            k = K - 1 - step if reverse else step
            for i in range(I):
                acc[i] += x[o, k, i]
                out[o, k, i] = acc[i]
