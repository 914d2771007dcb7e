"""Softmax and log-softmax over the middle axis of a contiguous (outer, axis, inner) array."""
import numpy as np
from numba import prange

from firefly.kernels._jit import transcendental, memory_bound


@transcendental
def softmax_forward(x, out):
    O, R, I = x.shape
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        m = x[o, 0, i]
        for r in range(1, R):
            m = max(m, x[o, r, i])
        s = 0.0
        for r in range(R):
            e = np.exp(x[o, r, i] - m)  # shifted by the max, so exp never overflows
            out[o, r, i] = e
            s += e
        inv = 1.0 / s
        for r in range(R):
            out[o, r, i] *= inv


@memory_bound
def softmax_backward(grad, out, dx):
    """dx = y * (g - sum(g * y)), in two passes over each row."""
    O, R, I = out.shape
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
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        total = 0.0
        for r in range(R):
            total += grad[o, r, i]
        for r in range(R):
            dx[o, r, i] = grad[o, r, i] - np.exp(out[o, r, i]) * total
