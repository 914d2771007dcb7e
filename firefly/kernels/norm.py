"""Normalization kernels: batch norm over (N, C, S), layer norm over (M, D) rows, group norm over
(N, G, Cg * S). Each direction is one fused kernel; statistics accumulate in float64.

Statistics take one pass with a shift: sums of d = x - x0 and d * d, x0 being the slice's first
element, so the variance does not cancel catastrophically when the mean is large against the
spread. The sums run in four independent float64 accumulators so that the loop vectorizes
without fastmath.
"""
import math

import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound


@inline_helper
def _shifted_sums(v, shift):
    """(sum(v - shift), sum((v - shift) ** 2)) in float64, for a contiguous 1-D v."""
    s0 = s1 = s2 = s3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    n = v.size
    full = n - n % 4
    for i in range(0, full, 4):
        d0, d1 = np.float64(v[i]) - shift, np.float64(v[i + 1]) - shift
        d2, d3 = np.float64(v[i + 2]) - shift, np.float64(v[i + 3]) - shift
        s0 += d0
        s1 += d1
        s2 += d2
        s3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
    for i in range(full, n):
        d = np.float64(v[i]) - shift
        s0 += d
        q0 += d * d
    return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)


@inline_helper
def _grad_sums(g, v, mean):
    """(sum(g), sum(g * (v - mean))) in float64, for contiguous 1-D g and v."""
    s0 = s1 = s2 = s3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    n = v.size
    full = n - n % 4
    for i in range(0, full, 4):
        g0, g1, g2, g3 = np.float64(g[i]), np.float64(g[i + 1]), np.float64(g[i + 2]), np.float64(g[i + 3])
        s0 += g0
        s1 += g1
        s2 += g2
        s3 += g3
        q0 += g0 * (np.float64(v[i]) - mean)
        q1 += g1 * (np.float64(v[i + 1]) - mean)
        q2 += g2 * (np.float64(v[i + 2]) - mean)
        q3 += g3 * (np.float64(v[i + 3]) - mean)
    for i in range(full, n):
        s0 += g[i]
        q0 += g[i] * (np.float64(v[i]) - mean)
    return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)


@memory_bound
def batch_norm_forward(x, weight, bias, running_mean, running_var, training, update_running, momentum, eps,
                       mean, invstd, out):
    """out = (x - mean) * invstd * weight + bias per channel of x (N, C, S).

    In training the batch statistics are used (biased variance), saved in ``mean``/``invstd``,
    and, with ``update_running``, blended into the running ones with torch's unbiased variance.
    Otherwise the running statistics normalize.
    """
    N, C, S = x.shape
    count = N * S
    for c in prange(C):
        if training:
            shift = np.float64(x[0, c, 0])
            s = q = 0.0
            for n in range(N):
                a, b = _shifted_sums(x[n, c], shift)
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
        scale = r * weight[c]
        offset = bias[c] - mu * scale
        for n in range(N):
            src, dst = x[n, c], out[n, c]
            for i in range(S):
                dst[i] = src[i] * scale + offset


@memory_bound
def batch_norm_backward(grad, x, weight, mean, invstd, training, need_dx, dx, dweight, dbias):
    """dweight = sum(grad * xhat), dbias = sum(grad) per channel; dx through the batch
    statistics in training, or through the fixed running ones otherwise."""
    N, C, S = x.shape
    count = N * S
    for c in prange(C):
        mu, r = mean[c], invstd[c]
        sg = sgd = 0.0
        for n in range(N):
            a, b = _grad_sums(grad[n, c], x[n, c], mu)
            sg += a
            sgd += b
        dbias[c] = sg
        dweight[c] = sgd * r
        if need_dx:
            k = weight[c] * r
            if training:
                # dx = k * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mu) * r
                c1 = sgd * r * r / count
                c0 = k * (mu * c1 - sg / count)
                c1 *= k
                for n in range(N):
                    g, v, d = grad[n, c], x[n, c], dx[n, c]
                    for i in range(S):
                        d[i] = k * g[i] - c1 * v[i] + c0
            else:
                for n in range(N):
                    g, d = grad[n, c], dx[n, c]
                    for i in range(S):
                        d[i] = k * g[i]


@memory_bound
def layer_norm_forward(x, weight, bias, eps, mean, rstd, out):
    """Each row of x (M, D): out = (x - mean) * rstd * weight + bias."""
    M, D = x.shape
    for m in prange(M):
        v = x[m]
        shift = np.float64(v[0])
        s, q = _shifted_sums(v, shift)
        mu = s / D
        r = 1.0 / math.sqrt(max(q / D - mu * mu, 0.0) + eps)
        mu += shift
        mean[m], rstd[m] = mu, r
        o = out[m]
        for i in range(D):
            o[i] = (v[i] - mu) * r * weight[i] + bias[i]


@inline_helper
def _weighted_grad_sums(g, w, v, mu):
    """(sum(g * w), sum(g * w * (v - mu))) in float64 over contiguous rows, four accumulators each."""
    s0 = s1 = s2 = s3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    n = v.size
    full = n - n % 4
    for i in range(0, full, 4):
        a0, a1 = np.float64(g[i]) * w[i], np.float64(g[i + 1]) * w[i + 1]
        a2, a3 = np.float64(g[i + 2]) * w[i + 2], np.float64(g[i + 3]) * w[i + 3]
        s0 += a0
        s1 += a1
        s2 += a2
        s3 += a3
        q0 += a0 * (v[i] - mu)
        q1 += a1 * (v[i + 1] - mu)
        q2 += a2 * (v[i + 2] - mu)
        q3 += a3 * (v[i + 3] - mu)
    for i in range(full, n):
        a = np.float64(g[i]) * w[i]
        s0 += a
        q0 += a * (v[i] - mu)
    return (s0 + s1) + (s2 + s3), (q0 + q1) + (q2 + q3)


# Rows per task of layer_norm_backward: each task keeps its own dweight/dbias partial sums.
_LN_TASK_ROWS = 256


@memory_bound
def layer_norm_backward(grad, x, weight, mean, rstd, need_dx, dx, dweight, dbias):
    """dx per row through the row's statistics; dweight = sum over rows of grad * xhat and
    dbias = sum of grad, from per-task partial sums in float64."""
    M, D = x.shape
    tasks = (M + _LN_TASK_ROWS - 1) // _LN_TASK_ROWS
    partial_w = np.zeros((tasks, D))
    partial_b = np.zeros((tasks, D))
    for t in prange(tasks):
        pw, pb = partial_w[t], partial_b[t]
        for m in range(t * _LN_TASK_ROWS, min((t + 1) * _LN_TASK_ROWS, M)):
            g, v = grad[m], x[m]
            mu, r = np.float64(mean[m]), np.float64(rstd[m])
            for i in range(D):
                pw[i] += g[i] * ((v[i] - mu) * r)
                pb[i] += g[i]
            if need_dx:
                a, b = _weighted_grad_sums(g, weight, v, mu)
                a /= D
                b *= r / D
                # dx = r * (g * w - a - xhat * b'), with xhat = (v - mu) * r and b' = r * sum(g w (v - mu)) / D
                c1 = r * r * b
                c0 = c1 * mu - r * a
                d = dx[m]
                for i in range(D):
                    d[i] = r * g[i] * weight[i] - c1 * v[i] + c0
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
        shift = np.float64(v[0])
        s, q = _shifted_sums(v, shift)
        mu = s / L
        r = 1.0 / math.sqrt(max(q / L - mu * mu, 0.0) + eps)
        mu += shift
        mean[n, g], rstd[n, g] = mu, r
        o = out[n, g]
        for j in range(channels_per_group):
            c = g * channels_per_group + j
            scale = r * weight[c]
            offset = bias[c] - mu * scale
            for i in range(j * S, (j + 1) * S):
                o[i] = v[i] * scale + offset


@memory_bound
def group_norm_backward(grad, x, weight, channels_per_group, mean, rstd, need_dx, dx, dweight, dbias):
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
        a = b = 0.0
        for j in range(Cg):
            c = g * Cg + j
            sg, sgd = _grad_sums(gr[j * S:(j + 1) * S], v[j * S:(j + 1) * S], mu)
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
                for i in range(j * S, (j + 1) * S):
                    xhat = (v[i] - mu) * r
                    d[i] = r * (gr[i] * k - a - xhat * b)
    for c in range(G * Cg):
        sw = sb = 0.0
        for n in range(N):
            sw += partial_w[n, c]
            sb += partial_b[n, c]
        dweight[c], dbias[c] = sw, sb
