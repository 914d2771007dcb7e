"""Softmax and log-softmax over the middle axis of a contiguous (outer, axis, inner) array.

When the axis is the last one (inner == 1, the usual case) each row is contiguous and the
exponentials go through ``firefly.kernels.vmath``, which vectorizes; vmath writes its output
as scratch while it works, so the input it reads is always a separate row buffer. Row sums
and maxima use the reductions' multi-accumulator helpers. Other axes walk the strided rows
with scalar ``np.exp``.
"""
import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import memory_bound, transcendental
from firefly.kernels.reduce import LANES, max_contiguous, sum_contiguous


@transcendental
def softmax_forward(x, out):
    O, R, I = x.shape
    if I == 1:
        x2 = x.reshape(O, R)
        out2 = out.reshape(O, R)
        for o in prange(O):
            row, orow = x2[o], out2[o]
            m = max_contiguous(row)
            shifted = np.empty_like(row)
            for r in range(R):
                shifted[r] = row[r] - m  # shifted by the max, so exp never overflows
            vmath.exp(shifted, orow)
            inv = 1.0 / sum_contiguous(orow, np.empty(LANES))
            for r in range(R):
                orow[r] *= inv
        return
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        m = x[o, 0, i]
        for r in range(1, R):
            m = max(m, x[o, r, i])
        s = 0.0
        for r in range(R):
            e = np.exp(x[o, r, i] - m)
            out[o, r, i] = e
            s += e
        inv = 1.0 / s
        for r in range(R):
            out[o, r, i] *= inv


@memory_bound
def softmax_backward(grad, out, dx):
    """dx = y * (g - sum(g * y)), in two passes over each row."""
    O, R, I = out.shape
    if I == 1:
        g2 = grad.reshape(O, R)
        out2 = out.reshape(O, R)
        dx2 = dx.reshape(O, R)
        for o in prange(O):
            grow, orow, drow = g2[o], out2[o], dx2[o]
            for r in range(R):
                drow[r] = grow[r] * orow[r]
            dot = sum_contiguous(drow, np.empty(LANES))
            for r in range(R):
                drow[r] = orow[r] * (grow[r] - dot)
        return
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        dot = 0.0
        for r in range(R):
            dot += grad[o, r, i] * out[o, r, i]
        for r in range(R):
            dx[o, r, i] = out[o, r, i] * (grad[o, r, i] - dot)


@transcendental
def log_softmax_forward(x, out):
    O, R, I = x.shape
    if I == 1:
        x2 = x.reshape(O, R)
        out2 = out.reshape(O, R)
        for o in prange(O):
            row, orow = x2[o], out2[o]
            m = max_contiguous(row)
            for r in range(R):
                orow[r] = row[r] - m
            exps = np.empty_like(row)
            vmath.exp(orow, exps)
            log_s = np.log(sum_contiguous(exps, np.empty(LANES)))
            for r in range(R):
                orow[r] -= log_s
        return
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        m = x[o, 0, i]
        for r in range(1, R):
            m = max(m, x[o, r, i])
        s = 0.0
        for r in range(R):
            s += np.exp(x[o, r, i] - m)
        shift = m + np.log(s)
        for r in range(R):
            out[o, r, i] = x[o, r, i] - shift


@transcendental
def log_softmax_backward(grad, out, dx):
    """dx = g - softmax(x) * sum(g), with softmax recovered from the saved output."""
    O, R, I = out.shape
    if I == 1:
        g2 = grad.reshape(O, R)
        out2 = out.reshape(O, R)
        dx2 = dx.reshape(O, R)
        for o in prange(O):
            grow, orow, drow = g2[o], out2[o], dx2[o]
            total = sum_contiguous(grow, np.empty(LANES))
            vmath.exp(orow, drow)
            for r in range(R):
                drow[r] = grow[r] - drow[r] * total
        return
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        total = 0.0
        for r in range(R):
            total += grad[o, r, i]
        for r in range(R):
            dx[o, r, i] = grad[o, r, i] - np.exp(out[o, r, i]) * total
