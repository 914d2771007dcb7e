"""Elementwise losses of an input and a same-shaped target, fused with their reduction: L1,
smooth L1, Huber, binary cross-entropy (on probabilities and on logits).

Each forward writes per-element losses (``reduce`` False) or returns their float64 sum; each
backward writes the input's gradient and, when ``need_target``, the target's, from one
upstream value per element (``per_element``) or one for all. Flat contiguous arrays.
"""

import math

import numpy as np
from numba import prange

from firefly.kernels._jit import (
    PARALLEL_MIN_MEMORY_BOUND,
    PARALLEL_MIN_TRANSCENDENTAL,
    inline_helper,
    memory_bound,
    specialise,
    transcendental,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.reduce import EMPTY_1D, kept_chunk_sum, partials_kernel, sum_in_order

# Elements per partial sum of a reducing forward: each share sums whole chunks, and the chunks'
# sums are added in order, so the total does not depend on the number of threads.
LOSS_CHUNK = 4096


def _chunk_sums(input, *rest):
    """A forward's partial sums in a parallel run, one per chunk of LOSS_CHUNK elements (the
    serial run adds each chunk's sum to its total as it goes, in the same order)."""
    return np.empty((input.size + LOSS_CHUNK - 1) // LOSS_CHUNK)


@inline_helper
def _sign(d):
    return 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)


@inline_helper
def _smooth_l1(d, beta):
    a = abs(d)
    return 0.5 * d * d / beta if a < beta else a - 0.5 * beta


@inline_helper
def _smooth_l1_slope(d, beta):
    return d / beta if abs(d) < beta else _sign(d)


@inline_helper
def _huber(d, delta):
    a = abs(d)
    return 0.5 * d * d if a <= delta else delta * (a - 0.5 * delta)


@inline_helper
def _huber_slope(d, delta):
    return d if abs(d) <= delta else delta * _sign(d)


@inline_helper
def _l1(d, unused):
    return abs(d)


@inline_helper
def _l1_slope(d, unused):
    return _sign(d)


def _placeholder(*args):
    raise TypeError("a loss template runs only as a specialised copy")


# Names that the templates read and specialise() binds to each loss's scalar functions of
# (difference, parameter).
LOSS = SLOPE = _placeholder


def _difference_loss_forward(t, threads, partial, input, target, param, reduce, out):
    if t < 0:
        each_share(threads)
        return sum_in_order(partial)
    grand = 0.0  # the serial run's total: the chunks' sums added in order, as sum_in_order does
    c0, c1 = share_range(t, threads, (input.size + LOSS_CHUNK - 1) // LOSS_CHUNK)
    for c in range(c0, c1):
        # Slices indexed from 0: LLVM then drops Numba's negative-index checks.
        lo, hi = c * LOSS_CHUNK, (c + 1) * LOSS_CHUNK
        a, b, losses = input[lo:hi], target[lo:hi], out[lo:hi]
        total = 0.0
        for i in range(a.size):
            v = LOSS(a[i] - b[i], param)
            if reduce:
                total += v
            else:
                losses[i] = v
        grand += kept_chunk_sum(partial, c, threads, total)
    return grand


def _difference_loss_backward(
    grad, per_element, scale, input, target, param, need_target, dinput, dtarget
):
    for i in prange(input.size):
        d = (grad[i] if per_element else grad[0]) * scale * SLOPE(input[i] - target[i], param)
        dinput[i] = d
        if need_target:
            dtarget[i] = -d


def _difference_loss(name, loss, slope):
    """``name``'s forward and backward kernels: losses of the difference input - target and one
    float parameter (``loss(d, param)``, its derivative ``slope(d, param)``)."""
    return (
        partials_kernel(_chunk_sums, EMPTY_1D, PARALLEL_MIN_MEMORY_BOUND)(
            specialise(_difference_loss_forward, f"{name}_forward", LOSS=loss)
        ),
        memory_bound(specialise(_difference_loss_backward, f"{name}_backward", SLOPE=slope)),
    )


# |d| (the parameter is unused: the op passes 0.0).
l1_forward, l1_backward = _difference_loss("l1", _l1, _l1_slope)
# 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (beta 0: the L1 loss).
smooth_l1_forward, smooth_l1_backward = _difference_loss("smooth_l1", _smooth_l1, _smooth_l1_slope)
# 0.5 d^2 where |d| <= delta, else delta (|d| - delta / 2).
huber_forward, huber_backward = _difference_loss("huber", _huber, _huber_slope)


@partials_kernel(_chunk_sums, EMPTY_1D, PARALLEL_MIN_TRANSCENDENTAL)
def bce_forward(t, threads, partial, input, target, weight, reduce, out):
    """-weight (t log p + (1 - t) log(1 - p)), each log clamped at -100 as in torch."""
    if t < 0:
        each_share(threads)
        return sum_in_order(partial)
    grand = 0.0  # the serial run's total: the chunks' sums added in order, as sum_in_order does
    c0, c1 = share_range(t, threads, (input.size + LOSS_CHUNK - 1) // LOSS_CHUNK)
    for c in range(c0, c1):
        lo, hi = c * LOSS_CHUNK, (c + 1) * LOSS_CHUNK
        p_, t_, w_, losses = input[lo:hi], target[lo:hi], weight[lo:hi], out[lo:hi]
        total = 0.0
        for i in range(p_.size):
            p, q = np.float64(p_[i]), np.float64(t_[i])
            v = -w_[i] * (q * max(math.log(p), -100.0) + (1.0 - q) * max(math.log1p(-p), -100.0))
            if reduce:
                total += v
            else:
                losses[i] = v
        grand += kept_chunk_sum(partial, c, threads, total)
    return grand


@transcendental
def bce_backward(grad, per_element, scale, input, target, weight, need_target, dinput, dtarget):
    """d/dp = weight (p - t) / max(p (1 - p), 1e-12) (torch's guard);
    d/dt = weight (log(1-p) - log p)."""
    for i in prange(input.size):
        g = (grad[i] if per_element else grad[0]) * scale * weight[i]
        p, t = np.float64(input[i]), np.float64(target[i])
        dinput[i] = g * (p - t) / max(p * (1.0 - p), 1e-12)
        if need_target:
            dtarget[i] = g * (max(math.log1p(-p), -100.0) - max(math.log(p), -100.0))


@partials_kernel(_chunk_sums, EMPTY_1D, PARALLEL_MIN_TRANSCENDENTAL)
def bce_with_logits_forward(t, threads, partial, input, target, weight, pos_weight, reduce, out):
    """weight ((1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)), softplus computed stably."""
    if t < 0:
        each_share(threads)
        return sum_in_order(partial)
    grand = 0.0  # the serial run's total: the chunks' sums added in order, as sum_in_order does
    c0, c1 = share_range(t, threads, (input.size + LOSS_CHUNK - 1) // LOSS_CHUNK)
    for c in range(c0, c1):
        lo, hi = c * LOSS_CHUNK, (c + 1) * LOSS_CHUNK
        x_, t_, w_, pw_ = input[lo:hi], target[lo:hi], weight[lo:hi], pos_weight[lo:hi]
        losses = out[lo:hi]
        total = 0.0
        for i in range(x_.size):
            x, q = np.float64(x_[i]), np.float64(t_[i])
            softplus_neg = math.log1p(math.exp(-abs(x))) + max(-x, 0.0)
            v = w_[i] * ((1.0 - q) * x + (1.0 + (pw_[i] - 1.0) * q) * softplus_neg)
            if reduce:
                total += v
            else:
                losses[i] = v
        grand += kept_chunk_sum(partial, c, threads, total)
    return grand


@transcendental
def bce_with_logits_backward(
    grad, per_element, scale, input, target, weight, pos_weight, need_target, dinput, dtarget
):
    """d/dx = weight ((1 - t) - (1 + (pos_weight - 1) t) sigmoid(-x));
    d/dt = weight ((pos_weight - 1) softplus(-x) - x)."""
    for i in prange(input.size):
        g = (grad[i] if per_element else grad[0]) * scale * weight[i]
        x, t = np.float64(input[i]), np.float64(target[i])
        e = math.exp(-abs(x))
        sigmoid_neg = e / (1.0 + e) if x >= 0 else 1.0 / (1.0 + e)
        dinput[i] = g * ((1.0 - t) - (1.0 + (pos_weight[i] - 1.0) * t) * sigmoid_neg)
        if need_target:
            dtarget[i] = g * ((pos_weight[i] - 1.0) * (math.log1p(e) + max(-x, 0.0)) - x)
