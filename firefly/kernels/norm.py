"""Normalization kernels: batch norm over (N, C, S), layer norm over (M, D) rows, group norm over
(N, G, Cg * S). Each direction is one fused kernel; statistics accumulate in float64.

Statistics take one pass with a shift: sums of d = x - x0 and d * d, x0 being the slice's first
element, so the variance does not cancel catastrophically when the mean is large against the
spread. The sums run in LANES independent float64 accumulators so that the loop vectorizes
without fastmath.
"""

import math

import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound

# float64 partial sums that a contiguous run is dealt across: without fastmath LLVM keeps one
# running sum in order, one dependent add after another; independent lanes vectorize.
LANES = 32


@inline_helper
def _shifted_sums(v, shift, lanes):
    """(sum(v - shift), sum((v - shift) ** 2)) in float64 for a contiguous 1-D v; ``lanes``
    is (2, LANES) float64 scratch."""
    s_lanes, q_lanes = lanes[0], lanes[1]
    s_lanes[:] = 0.0
    q_lanes[:] = 0.0
    n = v.size
    b = 0
    while b + LANES <= n:
        block = v[b : b + LANES]
        for k in range(LANES):
            d = np.float64(block[k]) - shift
            s_lanes[k] += d
            q_lanes[k] += d * d
        b += LANES
    s = q = 0.0
    for i in range(b, n):
        d = np.float64(v[i]) - shift
        s += d
        q += d * d
    for k in range(LANES):
        s += s_lanes[k]
        q += q_lanes[k]
    return s, q


@inline_helper
def _grad_sums(g, w, v, mean, lanes):
    """(sum(g * w), sum(g * w * (v - mean))) in float64 for contiguous 1-D g, v and w (w: a
    1-element array broadcast when it has size 1)."""
    s_lanes, q_lanes = lanes[0], lanes[1]
    s_lanes[:] = 0.0
    q_lanes[:] = 0.0
    n = v.size
    scalar_w = w.size == 1
    b = 0
    while b + LANES <= n:
        gb, vb = g[b : b + LANES], v[b : b + LANES]
        if scalar_w:
            for k in range(LANES):
                a = np.float64(gb[k])
                s_lanes[k] += a
                q_lanes[k] += a * (np.float64(vb[k]) - mean)
        else:
            wb = w[b : b + LANES]
            for k in range(LANES):
                a = np.float64(gb[k]) * wb[k]
                s_lanes[k] += a
                q_lanes[k] += a * (np.float64(vb[k]) - mean)
        b += LANES
    s = q = 0.0
    for i in range(b, n):
        a = np.float64(g[i]) * (w[0] if scalar_w else w[i])
        s += a
        q += a * (np.float64(v[i]) - mean)
    for k in range(LANES):
        s += s_lanes[k]
        q += q_lanes[k]
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
        lanes = np.empty((2, LANES))
        if training:
            shift = np.float64(x[0, c, 0])
            s = q = 0.0
            for n in range(N):
                a, b = _shifted_sums(x[n, c], shift, lanes)
                s += a
                q += b
            m = s / count
            var = max(q / count - m * m, 0.0)
            mu = shift + m
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
    one = np.ones(1)
    for c in prange(C):
        lanes = np.empty((2, LANES))
        mu, r = mean[c], invstd[c]
        sg = sgd = 0.0
        for n in range(N):
            a, b = _grad_sums(grad[n, c], one, x[n, c], mu, lanes)
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


# Rows per task of the layer-norm kernels: a task's scratch (and, backward, its dweight/dbias
# partial sums) serves all its rows.
_LN_TASK_ROWS = 256


@memory_bound
def layer_norm_forward(x, weight, bias, eps, mean, rstd, out):
    """Each row of x (M, D): out = (x - mean) * rstd * weight + bias."""
    M, D = x.shape
    tasks = (M + _LN_TASK_ROWS - 1) // _LN_TASK_ROWS
    for t in prange(tasks):
        lanes = np.empty((2, LANES))
        for m in range(t * _LN_TASK_ROWS, min((t + 1) * _LN_TASK_ROWS, M)):
            v = x[m]
            shift = np.float64(v[0])
            s, q = _shifted_sums(v, shift, lanes)
            mu = s / D
            r = 1.0 / math.sqrt(max(q / D - mu * mu, 0.0) + eps)
            mu += shift
            mean[m], rstd[m] = mu, r
            o = out[m]
            mu_t, r_t = (
                x.dtype.type(mu),
                x.dtype.type(r),
            )  # the elementwise pass in the input's dtype
            for i in range(D):
                o[i] = (v[i] - mu_t) * r_t * weight[i] + bias[i]


@memory_bound
def layer_norm_backward(grad, x, weight, mean, rstd, need_dx, dx, dweight, dbias):
    """dx per row through the row's statistics; dweight = sum over rows of grad * xhat and
    dbias = sum of grad, from per-task partial sums in float64."""
    M, D = x.shape
    tasks = (M + _LN_TASK_ROWS - 1) // _LN_TASK_ROWS
    partial_w = np.zeros((tasks, D))
    partial_b = np.zeros((tasks, D))
    for t in prange(tasks):
        lanes = np.empty((2, LANES))
        pw, pb = partial_w[t], partial_b[t]
        for m in range(t * _LN_TASK_ROWS, min((t + 1) * _LN_TASK_ROWS, M)):
            g, v = grad[m], x[m]
            mu, r = np.float64(mean[m]), np.float64(rstd[m])
            mu_t, r_t = x.dtype.type(mu), x.dtype.type(r)
            for i in range(D):
                pw[i] += g[i] * ((v[i] - mu_t) * r_t)
                pb[i] += g[i]
            if need_dx:
                a, b = _grad_sums(g, weight, v, mu, lanes)
                # dx = r * (g * w - mean(g * w) - xhat * mean(g * w * xhat)), xhat = (v - mu) * r
                c1 = x.dtype.type(r * r * r * b / D)
                c0 = x.dtype.type(r * a / D)
                d = dx[m]
                for i in range(D):
                    d[i] = r_t * g[i] * weight[i] - c1 * (v[i] - mu_t) - c0
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
        lanes = np.empty((2, LANES))
        n, g = ng // G, ng % G
        v = x[n, g]
        shift = np.float64(v[0])
        s, q = _shifted_sums(v, shift, lanes)
        mu = s / L
        r = 1.0 / math.sqrt(max(q / L - mu * mu, 0.0) + eps)
        mu += shift
        mean[n, g], rstd[n, g] = mu, r
        o = out[n, g]
        for j in range(channels_per_group):
            c = g * channels_per_group + j
            scale = r * weight[c]
            offset = bias[c] - mu * scale
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
    one = np.ones(1)
    for ng in prange(N * G):
        lanes = np.empty((2, LANES))
        n, g = ng // G, ng % G
        gr, v = grad[n, g], x[n, g]
        mu, r = np.float64(mean[n, g]), np.float64(rstd[n, g])
        a = b = 0.0
        for j in range(Cg):
            c = g * Cg + j
            sg, sgd = _grad_sums(gr[j * S : (j + 1) * S], one, v[j * S : (j + 1) * S], mu, lanes)
            partial_b[n, c] = sg
            partial_w[n, c] = sgd * r
            a += sg * weight[c]
            b += sgd * r * weight[c]
        if need_dx:
            a /= L
            b /= L
            d = dx[n, g]
            for j in range(Cg):
                k = weight[g * Cg + j]
                # Channel views indexed from 0, so that the loop vectorizes (see the forward).
                lo, hi = j * S, (j + 1) * S
                vc, gc, dc = v[lo:hi], gr[lo:hi], d[lo:hi]
                for i in range(S):
                    xhat = (vc[i] - mu) * r
                    dc[i] = r * (gc[i] * k - a - xhat * b)
    for c in range(G * Cg):
        sw = sb = 0.0
        for n in range(N):
            sw += partial_w[n, c]
            sb += partial_b[n, c]
        dweight[c], dbias[c] = sw, sb
