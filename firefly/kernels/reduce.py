"""Reductions over the middle axis of a contiguous (outer, reduced, inner) array.

``firefly.ops.reduce`` reshapes any run of adjacent axes into this form without copying, so
one kernel serves axis=None, a single axis, and tuples of axes.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound

# Full reductions shorter than this stay in one task per row; longer rows are split.
_SPLIT_ROW_MIN = 65_536
_ROW_CHUNKS = 16


@inline_helper
def _sum_contiguous(v):
    # Eight independent float64 accumulators: without fastmath LLVM may not reorder a single
    # running sum, which would chain every add on the one before. This keeps the pipelines
    # full and is more accurate than NumPy's float32 pairwise sum.
    n = v.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    blocks = n - n % 8
    for i in range(0, blocks, 8):
        s0 += v[i]
        s1 += v[i + 1]
        s2 += v[i + 2]
        s3 += v[i + 3]
        s4 += v[i + 4]
        s5 += v[i + 5]
        s6 += v[i + 6]
        s7 += v[i + 7]
    for i in range(blocks, n):
        s0 += v[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@memory_bound
def sum_forward(x, scale, out):
    """out[o, i] = scale * sum_r x[o, r, i]. ``scale`` is 1 for sum and 1/count for mean."""
    O, R, I = x.shape
    if I == 1:
        x2 = x.reshape(O, R)
        if O >= _ROW_CHUNKS or R < _SPLIT_ROW_MIN:
            for o in prange(O):
                out[o, 0] = _sum_contiguous(x2[o]) * scale
        else:
            partial = np.empty((O, _ROW_CHUNKS))
            for oc in prange(O * _ROW_CHUNKS):
                o, c = oc // _ROW_CHUNKS, oc % _ROW_CHUNKS
                partial[o, c] = _sum_contiguous(x2[o, c * R // _ROW_CHUNKS:(c + 1) * R // _ROW_CHUNKS])
            for o in range(O):
                out[o, 0] = _sum_contiguous(partial[o]) * scale
        return
    for o in prange(O):
        acc = np.zeros(I)
        for r in range(R):
            xr = x[o, r]
            for i in range(I):
                acc[i] += xr[i]
        orow = out[o]
        for i in range(I):
            orow[i] = acc[i] * scale


@memory_bound
def sum_backward(grad, scale, dx):
    """dx[o, r, i] = scale * grad[o, i]: the gradient of sum and mean, broadcast back."""
    O, R, I = dx.shape
    for orr in prange(O * R):
        o, r = orr // R, orr % R
        grow, drow = grad[o], dx[o, r]
        for i in range(I):
            drow[i] = grow[i] * scale


@memory_bound
def max_forward(x, out):
    """out[o, i] = max_r x[o, r, i]; NaN propagates as in np.max."""
    O, R, I = x.shape
    for o in prange(O):
        orow = out[o]
        x0 = x[o, 0]
        for i in range(I):
            orow[i] = x0[i]
        for r in range(1, R):
            xr = x[o, r]
            for i in range(I):
                v = xr[i]
                if v > orow[i] or v != v:
                    orow[i] = v


@memory_bound
def max_backward(grad, x, out, dx):
    """Sends grad to the maximal elements, split evenly among ties (as torch.amax does)."""
    O, R, I = x.shape
    for o in prange(O):
        orow, grow = out[o], grad[o]
        count = np.zeros(I)
        for r in range(R):
            xr = x[o, r]
            for i in range(I):
                if xr[i] == orow[i]:
                    count[i] += 1.0
        for r in range(R):
            xr, drow = x[o, r], dx[o, r]
            for i in range(I):
                drow[i] = grow[i] / count[i] if xr[i] == orow[i] else 0.0
