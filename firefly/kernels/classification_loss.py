"""Negative log-likelihood over (outer, classes, inner) log-probabilities with int64 targets that
the op has range-checked (``ignore_index`` entries excepted: those are skipped)."""
import numpy as np
from numba import prange

from firefly.kernels._jit import memory_bound


@memory_bound
def nll_forward(x, target, weight, ignore_index, losses):
    """losses[o, i] = -weight[t] * x[o, t, i] with t = target[o, i] (0 where ignored);
    returns (sum of losses, sum of the weights of the samples counted)."""
    O, C, I = x.shape
    total = 0.0
    weights = 0.0
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        t = target[o, i]
        if t == ignore_index:
            losses[o, i] = 0.0
        else:
            w = np.float64(weight[t])
            v = -w * x[o, t, i]
            losses[o, i] = v
            total += v
            weights += w
    return total, weights


@memory_bound
def nll_backward(grad, per_sample, scale, target, weight, ignore_index, dx):
    """dx[o, t, i] = -weight[t] * g * scale at each sample's target class, 0 elsewhere."""
    O, C, I = dx.shape
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        for c in range(C):
            dx[o, c, i] = 0.0
        t = target[o, i]
        if t != ignore_index:
            dx[o, t, i] = -weight[t] * (grad[o, i] if per_sample else grad[0, 0]) * scale
