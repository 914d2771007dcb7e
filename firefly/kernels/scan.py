"""Running sums along the middle axis of a contiguous (outer, length, inner) array: cumsum's
forward, and, run from the other end, its backward (a gradient is the reversed running sum of
the output's gradient)."""

import numpy as np
from numba import prange

from firefly.kernels._jit import memory_bound

# Columns per task when the scan runs down columns (inner > 1): enough contiguous elements per
# row to vectorize, and tasks enough to share out even when outer is 1 (cumsum along dim 0).
_BLOCK = 256


@memory_bound
def cumsum_along(x, reverse, out):
    """out[o, k, i] = sum of x[o, j, i] for j <= k (j >= k when ``reverse``), summed in float64
    as torch's CPU cumsum accumulates."""
    O, K, I = x.shape
    # Along the last dim (I == 1) a task is one row's running sum; down columns, a block of
    # _BLOCK columns. One prange loop for both, so that it compiles once for the serial and the
    # parallel run (sized_kernel cuts it into shares).
    blocks = 1 if I == 1 else (I + _BLOCK - 1) // _BLOCK
    for task in prange(O * blocks):
        if I == 1:
            acc1 = 0.0
            for step in range(K):
                k = K - 1 - step if reverse else step
                acc1 += x[task, k, 0]
                out[task, k, 0] = acc1
            continue
        o = task // blocks
        start = (task % blocks) * _BLOCK
        stop = min(start + _BLOCK, I)
        acc = np.zeros(_BLOCK, dtype=np.float64)
        for step in range(K):
            k = K - 1 - step if reverse else step
            for i in range(start, stop):
                acc[i - start] += x[o, k, i]
                out[o, k, i] = acc[i - start]
