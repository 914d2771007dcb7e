"""Loss kernels: cross-entropy as one fused log-softmax + NLL pass, forward and backward.

Logits are a contiguous (outer, classes, inner) array and targets (outer, inner) int64 class
indices that the op has already range-checked: these loops index with them unchecked.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import memory_bound, transcendental


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


# Elements per partial sum of mse_forward: partial sums keep float64 accumulation accurate and
# give the parallel build independent chunks.
_MSE_CHUNK = 4096


@memory_bound
def mse_forward(input, target, scale, out):
    """out[0] = scale * sum((input - target) ** 2), in one pass over flat arrays."""
    n = input.size
    chunks = (n + _MSE_CHUNK - 1) // _MSE_CHUNK
    partial = np.zeros(chunks)
    for c in prange(chunks):
        a = input[c * _MSE_CHUNK:min((c + 1) * _MSE_CHUNK, n)]
        b = target[c * _MSE_CHUNK:min((c + 1) * _MSE_CHUNK, n)]
        # Four accumulators, so that the adds do not wait on each other (no fastmath to reorder).
        s0 = s1 = s2 = s3 = 0.0
        full = a.size - a.size % 4
        for i in range(0, full, 4):
            d0, d1, d2, d3 = a[i] - b[i], a[i + 1] - b[i + 1], a[i + 2] - b[i + 2], a[i + 3] - b[i + 3]
            s0 += d0 * d0
            s1 += d1 * d1
            s2 += d2 * d2
            s3 += d3 * d3
        for i in range(full, a.size):
            d = a[i] - b[i]
            s0 += d * d
        partial[c] = (s0 + s1) + (s2 + s3)
    out[0] = partial.sum() * scale


@memory_bound
def mse_backward(input, target, grad_scale, need_target, dinput, dtarget):
    """dinput = 2 * grad_scale * (input - target) and dtarget = -dinput, in one pass."""
    two_g = 2.0 * grad_scale
    for i in prange(input.size):
        d = two_g * (input[i] - target[i])
        dinput[i] = d
        if need_target:
            dtarget[i] = -d
