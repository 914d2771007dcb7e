"""Normalization kernels: batch norm over (N, C, S), layer norm over (M, D) rows, group norm over
(N, G, Cg * S). Each direction is one fused kernel.

Statistics take one pass with a shift: sums of d = x - x0 and d * d, x0 being the slice's first
element, so the variance does not cancel catastrophically when the mean is large against the
spread. Each SUM_CHUNK elements are summed in the input's dtype by a called helper that LLVM
may reassociate (``called_helper(reassociate=True)``), so that it vectorizes into as many
partial sums as its vector registers hold, and the chunks' sums are added into float64
totals: a float32 partial sum adds a few dozen terms before its value reaches float64, whatever
the slice's length (torch accumulates float32 norms in float32 too). float64 inputs keep
float64 throughout. The elementwise passes run in the dtype as well.

Summing in LANES partial sums in memory instead (as ``firefly.kernels.reduce`` does, without
fastmath) cost a fixed reset and combine of the lanes per slice, as much as reading a slice of
256 float32: most of batch norm's statistics pass over 8x8 maps (docs/performance.md has the
numbers).
"""

import math

import numpy as np
from numba import prange

from firefly.kernels._jit import called_helper, inline_helper, memory_bound
from firefly.kernels.reduce import SUM_CHUNK


@called_helper(reassociate=True)
def _chunk_shifted_sums(v, shift):
    """(sum(v - shift), sum((v - shift) ** 2)) in v's dtype, over at most SUM_CHUNK elements."""
    s = q = v.dtype.type(0)
    for i in range(v.size):
        d = v[i] - shift
        s += d
        q += d * d
    return s, q


@called_helper(reassociate=True)
def _chunk_grad_sums(g, v, mean):
    """(sum(g), sum(g * (v - mean))) in v's dtype, over at most SUM_CHUNK elements."""
    s = q = v.dtype.type(0)
    for i in range(v.size):
        s += g[i]
        q += g[i] * (v[i] - mean)
    return s, q


@called_helper(reassociate=True)
def _chunk_row_grad_sums(g, v, w, mean, rstd):
    """(sum(g * w), sum(g * w * xhat)), xhat = (v - mean) * rstd, in v's dtype, over at most
    SUM_CHUNK elements."""
    a = b = v.dtype.type(0)
    for i in range(v.size):
        gw = g[i] * w[i]
        a += gw
        b += gw * ((v[i] - mean) * rstd)
    return a, b


@inline_helper
def _shifted_sums(v, shift):
    """(sum(v - shift), sum((v - shift) ** 2)) for a contiguous 1-D v, as float64 totals of
    chunks summed in v's dtype; ``shift`` is of v's dtype."""
    n = v.size
    s = q = 0.0
    for lo in range(0, n, SUM_CHUNK):
        a, b = _chunk_shifted_sums(v[lo : min(lo + SUM_CHUNK, n)], shift)
        s += a
        q += b
    return s, q


@inline_helper
def _grad_sums(g, v, mean):
    """(sum(g), sum(g * (v - mean))) for contiguous 1-D g and v, summed as _shifted_sums
    does; ``mean`` is of v's dtype."""
    n = v.size
    s = q = 0.0
    for lo in range(0, n, SUM_CHUNK):
        hi = min(lo + SUM_CHUNK, n)
        a, b = _chunk_grad_sums(g[lo:hi], v[lo:hi], mean)
        s += a
        q += b
    return s, q


@memory_bound
def batch_norm_forward(
    x,
    weight,
    bias,
    running_mean,
    running_var,
    num_batches_tracked,
    training,
    update_running,
    cumulative,
    momentum,
    eps,
    mean,
    invstd,
    out,
):
    """out = (x - mean) * invstd * weight + bias per channel of x (N, C, S).

    In training the batch statistics are used (biased variance), saved in ``mean``/``invstd``,
    and, with ``update_running``, blended into the running ones with torch's unbiased variance.
    Otherwise the running statistics normalize.

    ``num_batches_tracked`` (one int64, or empty) counts the updates; with ``cumulative`` the
    blend factor is ``1 / count`` instead of ``momentum`` (a cumulative average). The count is
    advanced and read here rather than in Python so that a replayed step (``firefly.compile``)
    advances it too and never reuses a recorded factor.
    """
    N, C, S = x.shape
    count = N * S
    if update_running and num_batches_tracked.size:
        num_batches_tracked[0] += 1
        if cumulative:
            momentum = 1.0 / num_batches_tracked[0]
    for c in prange(C):
        if training:
            shift = x[0, c, 0]
            s = q = 0.0
            for n in range(N):
                a, b = _shifted_sums(x[n, c], shift)
                s += a
                q += b
            m = s / count
            var = max(q / count - m * m, 0.0)
            mu = np.float64(shift) + m
            if update_running:
                running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mu
                unbiased = var * count / (count - 1) if count > 1 else var
                running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased
        else:
            mu = np.float64(running_mean[c])
            var = np.float64(running_var[c])
        r = 1.0 / math.sqrt(var + eps)
        mean[c], invstd[c] = mu, r
        # The elementwise pass runs in the input's dtype (float32 math vectorizes twice as wide).
        mu_t, scale, offset = x.dtype.type(mu), x.dtype.type(r * weight[c]), x.dtype.type(bias[c])
        for n in range(N):
            src, dst = x[n, c], out[n, c]
            for i in range(S):
                dst[i] = (src[i] - mu_t) * scale + offset


@memory_bound
def batch_norm_backward(grad, x, weight, mean, invstd, training, need_dx, dx, dweight, dbias):
    """dweight = sum(grad * xhat), dbias = sum(grad) per channel; dx through the batch
    statistics in training, or through the fixed running ones otherwise."""
    N, C, S = x.shape
    count = N * S
    for c in prange(C):
        mu, r = np.float64(mean[c]), np.float64(invstd[c])
        sg = sgd = 0.0
        for n in range(N):
            a, b = _grad_sums(grad[n, c], x[n, c], x.dtype.type(mu))
            sg += a
            sgd += b
        dbias[c] = sg
        dweight[c] = sgd * r
        if need_dx:
            k = weight[c] * r
            k_t, mu_t = x.dtype.type(k), x.dtype.type(mu)
            if training:
                # dx = k * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mu) * r
                c1 = x.dtype.type(k * sgd * r * r / count)
                c0 = x.dtype.type(k * sg / count)
                for n in range(N):
                    g, v, d = grad[n, c], x[n, c], dx[n, c]
                    for i in range(S):
                        d[i] = k_t * g[i] - c1 * (v[i] - mu_t) - c0
            else:
                for n in range(N):
                    g, d = grad[n, c], dx[n, c]
                    for i in range(S):
                        d[i] = k_t * g[i]


# Rows per task of the layer-norm backward: a task's dweight/dbias partial sums serve all its
# rows.
_LN_TASK_ROWS = 256


@memory_bound
def layer_norm_forward(x, weight, bias, eps, mean, rstd, out):
    """Each row of x (M, D): out = (x - mean) * rstd * weight + bias."""
    M, D = x.shape
    for m in prange(M):
        v = x[m]
        shift = v[0]
        s, q = _shifted_sums(v, shift)
        mu = s / D
        r = 1.0 / math.sqrt(max(q / D - mu * mu, 0.0) + eps)
        mu += np.float64(shift)
        mean[m], rstd[m] = mu, r
        o = out[m]
        # The elementwise pass in the input's dtype (float32 vectorizes twice as wide).
        mu_t, r_t = x.dtype.type(mu), x.dtype.type(r)
        for i in range(D):
            o[i] = (v[i] - mu_t) * r_t * weight[i] + bias[i]


@memory_bound
def layer_norm_backward(grad, x, weight, mean, rstd, need_dx, dx, dweight, dbias):
    """dx per row through the row's statistics; dweight = sum over rows of grad * xhat and
    dbias = sum of grad, from per-task partial sums in the dtype, added in float64.

    One pass per row takes the row's sums (the row then sits in L1); a second writes dx and
    adds the row into the parameters' partial sums."""
    M, D = x.shape
    tasks = (M + _LN_TASK_ROWS - 1) // _LN_TASK_ROWS
    partial_w = np.zeros((tasks, D), x.dtype)
    partial_b = np.zeros((tasks, D), x.dtype)
    for t in prange(tasks):
        pw, pb = partial_w[t], partial_b[t]
        for m in range(t * _LN_TASK_ROWS, min((t + 1) * _LN_TASK_ROWS, M)):
            g, v = grad[m], x[m]
            mu_t, r_t = x.dtype.type(mean[m]), x.dtype.type(rstd[m])
            if need_dx:
                a = b = 0.0  # sum(g * w) and sum(g * w * xhat)
                for lo in range(0, D, SUM_CHUNK):
                    hi = min(lo + SUM_CHUNK, D)
                    sa, sb = _chunk_row_grad_sums(g[lo:hi], v[lo:hi], weight[lo:hi], mu_t, r_t)
                    a += sa
                    b += sb
                # dx = r * (g * w - mean(g * w) - xhat * mean(g * w * xhat)), xhat = (v - mu) * r
                c1, c0 = x.dtype.type(b / D), x.dtype.type(a / D)
                d = dx[m]
                for i in range(D):
                    xhat = (v[i] - mu_t) * r_t
                    pw[i] += g[i] * xhat
                    pb[i] += g[i]
                    d[i] = r_t * (g[i] * weight[i] - c0 - xhat * c1)
            else:
                for i in range(D):
                    pw[i] += g[i] * ((v[i] - mu_t) * r_t)
                    pb[i] += g[i]
    for i in range(D):
        sw = sb = 0.0
        for t in range(tasks):
            sw += partial_w[t, i]
            sb += partial_b[t, i]
        dweight[i], dbias[i] = sw, sb


@memory_bound
def group_norm_forward(x, weight, bias, channels_per_group, eps, mean, rstd, out):
    """x (N, G, Cg * S): statistics per (n, g); weight and bias per channel (G * Cg)."""
    N, G, L = x.shape
    S = L // channels_per_group
    for ng in prange(N * G):
        n, g = ng // G, ng % G
        v = x[n, g]
        shift = v[0]
        s, q = _shifted_sums(v, shift)
        mu = s / L
        r = 1.0 / math.sqrt(max(q / L - mu * mu, 0.0) + eps)
        mu += np.float64(shift)
        mean[n, g], rstd[n, g] = mu, r
        o = out[n, g]
        for j in range(channels_per_group):
            c = g * channels_per_group + j
            # The elementwise pass in the input's dtype (float32 vectorizes twice as wide).
            scale = x.dtype.type(r * weight[c])
            offset = x.dtype.type(bias[c] - mu * (r * weight[c]))
            # Views of the channel indexed from 0: with the index starting at j * S, LLVM cannot
            # drop Numba's negative-index checks and the loop does not vectorize (14x slower).
            vc, oc = v[j * S : (j + 1) * S], o[j * S : (j + 1) * S]
            for i in range(S):
                oc[i] = vc[i] * scale + offset


@memory_bound
def group_norm_backward(
    grad, x, weight, channels_per_group, mean, rstd, need_dx, dx, dweight, dbias
):
    """dx per (n, g) through its statistics; dweight and dbias per channel, summed over n from
    per-sample partial sums."""
    N, G, L = x.shape
    Cg = channels_per_group
    S = L // Cg
    partial_w = np.zeros((N, G * Cg))
    partial_b = np.zeros((N, G * Cg))
    for ng in prange(N * G):
        n, g = ng // G, ng % G
        gr, v = grad[n, g], x[n, g]
        mu, r = np.float64(mean[n, g]), np.float64(rstd[n, g])
        mu_t, r_t = x.dtype.type(mu), x.dtype.type(r)
        a = b = 0.0
        for j in range(Cg):
            c = g * Cg + j
            sg, sgd = _grad_sums(gr[j * S : (j + 1) * S], v[j * S : (j + 1) * S], mu_t)
            partial_b[n, c] = sg
            partial_w[n, c] = sgd * r
            a += sg * weight[c]
            b += sgd * r * weight[c]
        if need_dx:
            a_t, b_t = x.dtype.type(a / L), x.dtype.type(b / L)
            d = dx[n, g]
            for j in range(Cg):
                k = x.dtype.type(weight[g * Cg + j])
                # Channel views indexed from 0, so that the loop vectorizes (see the forward).
                lo, hi = j * S, (j + 1) * S
                vc, gc, dc = v[lo:hi], gr[lo:hi], d[lo:hi]
                for i in range(S):
                    xhat = (vc[i] - mu_t) * r_t
                    dc[i] = r_t * (gc[i] * k - a_t - xhat * b_t)
    for c in range(G * Cg):
        sw = sb = 0.0
        for n in range(N):
            sw += partial_w[n, c]
            sb += partial_b[n, c]
        dweight[c], dbias[c] = sw, sb
