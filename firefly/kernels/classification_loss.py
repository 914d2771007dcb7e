"""Classification losses over (outer, classes, inner) arrays: negative log-likelihood of
log-probabilities, and cross-entropy of logits (fused log-softmax) with class weights,
``ignore_index``, label smoothing and probability targets. Integer targets have been
range-checked by the op (``ignore_index`` entries excepted: those are skipped)."""

import math

import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import (
    PARALLEL_MIN_MEMORY_BOUND,
    PARALLEL_MIN_TRANSCENDENTAL,
    assume_nonnegative,
    inline_helper,
    memory_bound,
    transcendental,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.families import ROW_TASKS, _reassociated_sum, _softmax_row_max
from firefly.kernels.reduce import EMPTY_2D, LANES, SUM_CHUNK, partials_kernel, sum_in_order

# Samples per partial sum of a forward: each share sums whole chunks, and the chunks' sums are
# added in order, so the totals do not depend on the number of threads.
SAMPLE_CHUNK = 1024


def _chunk_sums(x, *rest):
    """A forward's two partial sums (the losses', the divisor's) in a parallel run, one pair
    per chunk of SAMPLE_CHUNK samples (the serial run adds each chunk's sums to its totals as
    it goes, in the same order)."""
    return np.empty((2, (x.shape[0] * x.shape[2] + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK))


@partials_kernel(_chunk_sums, EMPTY_2D, PARALLEL_MIN_MEMORY_BOUND)
def nll_forward(t, threads, partial, x, target, weight, ignore_index, losses):
    """losses[o, i] = -weight[t] * x[o, t, i] with t = target[o, i] (0 where ignored);
    returns (sum of losses, sum of the weights of the samples counted)."""
    O, C, I = x.shape
    if t < 0:
        each_share(threads)
        return sum_in_order(partial[0]), sum_in_order(partial[1])
    # The serial run's totals: the chunks' sums added in order, as sum_in_order adds them.
    grand, grand_divisor = 0.0, 0.0
    first, last = share_range(t, threads, (O * I + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK)
    for chunk in range(first, last):
        total = 0.0
        weights = 0.0
        for oi in range(chunk * SAMPLE_CHUNK, min((chunk + 1) * SAMPLE_CHUNK, O * I)):
            assume_nonnegative(oi)  # as from 0: no wraparound of the indexes it gives
            o, i = oi // I, oi % I
            k = target[o, i]
            if k == ignore_index:
                losses[o, i] = 0.0
            else:
                w = np.float64(weight[k])
                v = -w * x[o, k, i]
                losses[o, i] = v
                total += v
                weights += w
        if threads == 1:
            grand, grand_divisor = grand + total, grand_divisor + weights
        else:
            partial[0, chunk], partial[1, chunk] = total, weights
    return grand, grand_divisor


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


@inline_helper
def _class_row(x, x2, o, i, row_copy):
    """Sample (o, i)'s logits x[o, :, i] as a contiguous row: x2[o] (x reshaped to (O, C * I))
    when inner is 1, else copied into ``row_copy``; contiguous, the max, exp and sum loops
    vectorize."""
    if x.shape[2] == 1:
        return x2[o]
    for c in range(x.shape[1]):
        row_copy[c] = x[o, c, i]
    return row_copy


@inline_helper
def _exp_total(row, m, exps):
    """sum(exp(row - m)) in float64, the exps written to ``exps`` and summed in the row's dtype
    in chunks of SUM_CHUNK, in any order (as the softmax family's rows: the exp loop and the
    sums vectorize; exp stays outside reassociated code)."""
    C = row.size
    for c in range(C):
        exps[c] = vmath.exp_flush_subnormal(row[c] - m)
    s = 0.0
    for lo in range(0, C, SUM_CHUNK):
        s += _reassociated_sum(exps[lo : min(lo + SUM_CHUNK, C)])
    return s


@partials_kernel(_chunk_sums, EMPTY_2D, PARALLEL_MIN_TRANSCENDENTAL)
def cross_entropy_forward(
    t,
    threads,
    partial,
    x,
    target,
    probs,
    prob_targets,
    weight,
    ignore_index,
    smoothing,
    losses,
    shift,
    log_sum,
):
    """Fused log-softmax and cross-entropy per sample of logits x (outer, C, inner).

    Each sample's target distribution q is the one-hot of ``target[o, i]`` (class indices) or
    ``probs[o, :, i]`` (probability targets, ``prob_targets``), mixed with the uniform one by
    ``smoothing``; the loss is -sum_c weight[c] q[c] log_softmax(x)[c], computed as
    weight * q * ((max - x) + log_sum) so that it keeps its precision for large logits. A sample
    whose class is ``ignore_index`` costs 0. Saves each sample's max (``shift``) and
    log(sum(exp(x - max))) (``log_sum``); returns (sum of losses, the mean's divisor: summed
    target-class weights of the counted samples, or the sample count for probability targets).
    """
    O, C, I = x.shape
    uniform = smoothing / C
    if t < 0:
        each_share(threads)
        return sum_in_order(partial[0]), sum_in_order(partial[1])
    x2 = x.reshape(O, C * I)
    lanes = np.empty(LANES, x.dtype)
    row_copy = np.empty(C if I != 1 else 0, x.dtype)
    exps = np.empty(C, x.dtype)
    # The serial run's totals: the chunks' sums added in order, as sum_in_order adds them.
    grand, grand_divisor = 0.0, 0.0
    first, last = share_range(t, threads, (O * I + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK)
    for chunk in range(first, last):
        total = 0.0
        divisor = 0.0
        for oi in range(chunk * SAMPLE_CHUNK, min((chunk + 1) * SAMPLE_CHUNK, O * I)):
            assume_nonnegative(oi)  # as from 0: no wraparound of the indexes it gives
            o, i = oi // I, oi % I
            row = _class_row(x, x2, o, i, row_copy)
            m = _softmax_row_max(row, lanes)
            s = _exp_total(row, m, exps)
            ls = math.log(s)
            shift[o, i] = m
            log_sum[o, i] = ls
            loss = 0.0
            if prob_targets:
                for c in range(C):
                    q = probs[o, c, i] * (1.0 - smoothing) + uniform
                    loss += weight[c] * q * ((m - row[c]) + ls)
                counted = 1.0
            else:
                k = target[o, i]
                if k == ignore_index:
                    counted = 0.0
                else:
                    loss = (1.0 - smoothing) * weight[k] * ((m - row[k]) + ls)
                    if smoothing > 0.0:
                        spread = 0.0
                        for c in range(C):
                            spread += weight[c] * ((m - row[c]) + ls)
                        loss += uniform * spread
                    counted = weight[k]
            losses[o, i] = loss
            total += loss
            divisor += counted
        if threads == 1:
            grand, grand_divisor = grand + total, grand_divisor + divisor
        else:
            partial[0, chunk], partial[1, chunk] = total, divisor
    return grand, grand_divisor


@transcendental
def cross_entropy_backward(
    grad,
    per_sample,
    scale,
    x,
    target,
    probs,
    prob_targets,
    weight,
    ignore_index,
    smoothing,
    shift,
    log_sum,
    dx,
):
    """dx[c] = g * (softmax(x)[c] * sum_k weight[k] q[k] - weight[c] q[c]), g = grad * scale."""
    O, C, I = x.shape
    x2 = x.reshape(O, C * I)
    dx2 = dx.reshape(O, C * I)
    weight_total = 0.0
    for c in range(C):
        weight_total += weight[c]
    uniform = smoothing / C
    rows = O * I
    tasks = min(rows, ROW_TASKS)
    for task in prange(tasks):
        scratch = C if I != 1 else 0
        row_copy, dx_copy = np.empty(scratch, x.dtype), np.empty(scratch, dx.dtype)
        for oi in range(task * rows // tasks, (task + 1) * rows // tasks):
            o, i = oi // I, oi % I
            row = _class_row(x, x2, o, i, row_copy)
            drow = dx2[o] if I == 1 else dx_copy
            g = (grad[o, i] if per_sample else grad[0, 0]) * scale
            m, ls = shift[o, i], log_sum[o, i]
            t = 0 if prob_targets else target[o, i]
            if not prob_targets and t == ignore_index:
                drow[:] = 0.0
            else:
                for c in range(C):
                    drow[c] = vmath.exp((row[c] - m) - ls)
                if prob_targets:
                    mass = 0.0
                    for c in range(C):
                        mass += weight[c] * (probs[o, c, i] * (1.0 - smoothing) + uniform)
                    for c in range(C):
                        q = probs[o, c, i] * (1.0 - smoothing) + uniform
                        drow[c] = g * (drow[c] * mass - weight[c] * q)
                else:
                    mass = (1.0 - smoothing) * weight[t] + uniform * weight_total
                    for c in range(C):
                        drow[c] = g * (drow[c] * mass - weight[c] * uniform)
                    drow[t] -= g * (1.0 - smoothing) * weight[t]
            if I != 1:
                for c in range(C):
                    dx[o, c, i] = drow[c]
