"""Loss kernels: the fused mean squared error (cross-entropy lives in classification_loss)."""

import numpy as np
from numba import prange

from firefly.kernels._jit import (
    memory_bound,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.reduce import EMPTY_1D, kept_chunk_sum, partials_kernel, sum_in_order

# Elements per partial sum of mse_forward: partial sums keep float64 accumulation accurate and
# give the parallel build independent chunks.
_MSE_CHUNK = 4096


def _mse_partials(input, target, scale, out):
    """mse_forward's sums per chunk of _MSE_CHUNK elements in a parallel run (the serial run
    adds each chunk's sum to its total as it goes, in the same order)."""
    return np.empty((input.size + _MSE_CHUNK - 1) // _MSE_CHUNK)


@partials_kernel(_mse_partials, EMPTY_1D)
def mse_forward(t, threads, partial, input, target, scale, out):
    """out[0] = scale * sum((input - target) ** 2), in one pass over flat arrays."""
    if t < 0:
        each_share(threads)
        out[0] = sum_in_order(partial) * scale
        return
    n = input.size
    grand = 0.0  # the serial run's total: the chunks' sums added in order, as sum_in_order does
    c0, c1 = share_range(t, threads, (n + _MSE_CHUNK - 1) // _MSE_CHUNK)
    for c in range(c0, c1):
        a = input[c * _MSE_CHUNK : min((c + 1) * _MSE_CHUNK, n)]
        b = target[c * _MSE_CHUNK : min((c + 1) * _MSE_CHUNK, n)]
        # Four accumulators, so that the adds do not wait on each other (no fastmath to
        # reorder).
        s0 = s1 = s2 = s3 = 0.0
        full = a.size - a.size % 4
        for i in range(0, full, 4):
            d0, d1, d2, d3 = (
                a[i] - b[i],
                a[i + 1] - b[i + 1],
                a[i + 2] - b[i + 2],
                a[i + 3] - b[i + 3],
            )
            s0 += d0 * d0
            s1 += d1 * d1
            s2 += d2 * d2
            s3 += d3 * d3
        for i in range(full, a.size):
            d = a[i] - b[i]
            s0 += d * d
        grand += kept_chunk_sum(partial, c, threads, (s0 + s1) + (s2 + s3))
    if threads == 1:
        out[0] = grand * scale


@memory_bound
def mse_backward(input, target, grad_scale, need_target, dinput, dtarget):
    """dinput = 2 * grad_scale * (input - target) and dtarget = -dinput, in one pass."""
    two_g = 2.0 * grad_scale
    for i in prange(input.size):
        d = two_g * (input[i] - target[i])
        dinput[i] = d
        if need_target:
            dtarget[i] = -d
