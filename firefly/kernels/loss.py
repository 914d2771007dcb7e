"""Loss kernels: cross-entropy as one fused log-softmax + NLL pass, forward and backward.

Logits are a contiguous (outer, classes, inner) array and targets (outer, inner) int64 class
indices that the op has already range-checked: these loops index with them unchecked.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import transcendental


@transcendental
def cross_entropy_forward(x, target, losses, shift, log_sum):
    """losses = logsumexp(x) - x[target] per sample; returns their sum (accumulated in float64).

    Saves each sample's max (``shift``) and log(sum(exp(x - max))) (``log_sum``) for backward.
    The loss is formed as (max - x[target]) + log_sum: both terms are small differences, so it
    keeps full precision for logits around 1e4, where max + log_sum would round away the log.
    """
    O, C, I = x.shape
    total = 0.0
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        m = x[o, 0, i]
        for c in range(1, C):
            m = max(m, x[o, c, i])
        s = 0.0
        for c in range(C):
            s += np.exp(x[o, c, i] - m)
        ls = np.log(s)
        loss = (m - x[o, target[o, i], i]) + ls
        losses[o, i] = loss
        shift[o, i] = m
        log_sum[o, i] = ls
        total += loss
    return total


@transcendental
def cross_entropy_backward(grad, per_sample, scale, x, target, shift, log_sum, dx):
    """dx = g * (softmax(x) - onehot(target)), g = grad[o, i] * scale (or grad[0, 0] * scale
    when the loss was reduced to one number)."""
    O, C, I = x.shape
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        g = (grad[o, i] if per_sample else grad[0, 0]) * scale
        m, ls = shift[o, i], log_sum[o, i]
        for c in range(C):
            dx[o, c, i] = g * np.exp((x[o, c, i] - m) - ls)
        dx[o, target[o, i], i] -= g
