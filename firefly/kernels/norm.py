"""Normalization kernels: batch norm over (N, C, S), layer norm over (M, D) rows, group norm over
(N, G, Cg * S). Each direction is one fused kernel.

Statistics take one pass with a shift: sums of d = x - x0 and d * d, x0 being the slice's first
element, so the variance does not cancel catastrophically when the mean is large against the
spread. The sums run in LANES independent partial sums of the input's dtype, so that the loop
vectorizes without fastmath at the dtype's full width, and every SUM_CHUNK elements the lanes
are added into float64 totals: a float32 lane adds at most SUM_CHUNK / LANES terms before its
value reaches float64, whatever the slice's length (torch accumulates float32 norms in float32
too). float64 inputs keep float64 throughout. The elementwise passes run in the dtype as well.
"""

import math

import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound
from firefly.kernels.reduce import LANES, SUM_CHUNK, combine_lanes


@inline_helper
def _shifted_sums(v, shift, lanes):
    """(sum(v - shift), sum((v - shift) ** 2)) for a contiguous 1-D v, as float64 totals of
    chunks summed in ``lanes``, (2, LANES) scratch of v's dtype; ``shift`` is of v's dtype."""
    s_lanes, q_lanes = lanes[0], lanes[1]
    n = v.size
    W = LANES
    s = q = 0.0
    for chunk in range(0, n, SUM_CHUNK):
        s_lanes[:] = 0.0
        q_lanes[:] = 0.0
        stop = min(chunk + SUM_CHUNK, n)
        b = chunk
        # Quads of four elements added pairwise before the lanes: one update of the lanes
        # (loaded and stored: a chain through memory) per 4 * LANES elements, not per LANES.
        # Blocks are views indexed from 0: indexed as v[b + k], LLVM cannot drop Numba's
        # negative-index checks and does not vectorize.
        while b + 4 * W <= stop:
            block = v[b : b + 4 * W]
            for k in range(W):
                d0, d1 = block[k] - shift, block[W + k] - shift
                d2, d3 = block[2 * W + k] - shift, block[3 * W + k] - shift
                s_lanes[k] += (d0 + d1) + (d2 + d3)
                q_lanes[k] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
            b += 4 * W
        while b < stop:  # the chunk's last blocks, the last one possibly short
            block = v[b : min(b + W, stop)]
            for k in range(block.size):
                d = block[k] - shift
                s_lanes[k] += d
                q_lanes[k] += d * d
            b += W
        s += combine_lanes(s_lanes)
        q += combine_lanes(q_lanes)
    return s, q


@inline_helper
def _grad_sums(g, v, mean, lanes):
    """(sum(g), sum(g * (v - mean))) for contiguous 1-D g and v, summed as _shifted_sums
    does; ``mean`` is of v's dtype."""
    s_lanes, q_lanes = lanes[0], lanes[1]
    n = v.size
    W = LANES
    s = q = 0.0
    for chunk in range(0, n, SUM_CHUNK):
        s_lanes[:] = 0.0
        q_lanes[:] = 0.0
        stop = min(chunk + SUM_CHUNK, n)
        b = chunk
        while b + 4 * W <= stop:  # quads, as in _shifted_sums
            gb, vb = g[b : b + 4 * W], v[b : b + 4 * W]
            for k in range(W):
                g0, g1, g2, g3 = gb[k], gb[W + k], gb[2 * W + k], gb[3 * W + k]
                s_lanes[k] += (g0 + g1) + (g2 + g3)
                q_lanes[k] += (g0 * (vb[k] - mean) + g1 * (vb[W + k] - mean)) + (
                    g2 * (vb[2 * W + k] - mean) + g3 * (vb[3 * W + k] - mean)
                )
            b += 4 * W
        while b < stop:
            hi = min(b + W, stop)
            gb, vb = g[b:hi], v[b:hi]
            for k in range(gb.size):
                s_lanes[k] += gb[k]
                q_lanes[k] += gb[k] * (vb[k] - mean)
            b += W
        s += combine_lanes(s_lanes)
        q += combine_lanes(q_lanes)
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
        lanes = np.empty((2, LANES), x.dtype)
        if training:
            shift = x[0, c, 0]
            s = q = 0.0
            for n in range(N):
                a, b = _shifted_sums(x[n, c], shift, lanes)
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
        lanes = np.empty((2, LANES), x.dtype)
        mu, r = np.float64(mean[c]), np.float64(invstd[c])
        sg = sgd = 0.0
        for n in range(N):
            a, b = _grad_sums(grad[n, c], x[n, c], x.dtype.type(mu), lanes)
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
        lanes = np.empty((2, LANES), x.dtype)
        for m in range(t * _LN_TASK_ROWS, min((t + 1) * _LN_TASK_ROWS, M)):
            v = x[m]
            shift = v[0]
            s, q = _shifted_sums(v, shift, lanes)
            mu = s / D
            r = 1.0 / math.sqrt(max(q / D - mu * mu, 0.0) + eps)
            mu += np.float64(shift)
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
    dbias = sum of grad, from per-task partial sums in the dtype, added in float64.

    One pass per row gathers the row's sums and the parameter partial sums together; a second
    writes dx."""
    M, D = x.shape
    tasks = (M + _LN_TASK_ROWS - 1) // _LN_TASK_ROWS
    partial_w = np.zeros((tasks, D), x.dtype)
    partial_b = np.zeros((tasks, D), x.dtype)
    for t in prange(tasks):
        lanes = np.empty((2, LANES), x.dtype)
        s_lanes, q_lanes = lanes[0], lanes[1]
        pw, pb = partial_w[t], partial_b[t]
        for m in range(t * _LN_TASK_ROWS, min((t + 1) * _LN_TASK_ROWS, M)):
            g, v = grad[m], x[m]
            mu_t, r_t = x.dtype.type(mean[m]), x.dtype.type(rstd[m])
            a = b = 0.0  # sum(g * w) and sum(g * w * xhat)
            W = LANES
            for chunk in range(0, D, SUM_CHUNK):
                s_lanes[:] = 0.0
                q_lanes[:] = 0.0
                stop = min(chunk + SUM_CHUNK, D)
                blk = chunk
                # Quads, as in _shifted_sums: the row sums' lanes are updated once per 4 * LANES
                # elements; the parameters' partial sums take every element.
                while blk + 4 * W <= stop:
                    gb, vb, wb = (
                        g[blk : blk + 4 * W],
                        v[blk : blk + 4 * W],
                        weight[blk : blk + 4 * W],
                    )
                    pwb, pbb = pw[blk : blk + 4 * W], pb[blk : blk + 4 * W]
                    for k in range(W):
                        g0, g1, g2, g3 = gb[k], gb[W + k], gb[2 * W + k], gb[3 * W + k]
                        x0 = (vb[k] - mu_t) * r_t
                        x1 = (vb[W + k] - mu_t) * r_t
                        x2 = (vb[2 * W + k] - mu_t) * r_t
                        x3 = (vb[3 * W + k] - mu_t) * r_t
                        pwb[k] += g0 * x0
                        pwb[W + k] += g1 * x1
                        pwb[2 * W + k] += g2 * x2
                        pwb[3 * W + k] += g3 * x3
                        pbb[k] += g0
                        pbb[W + k] += g1
                        pbb[2 * W + k] += g2
                        pbb[3 * W + k] += g3
                        w0, w1 = g0 * wb[k], g1 * wb[W + k]
                        w2, w3 = g2 * wb[2 * W + k], g3 * wb[3 * W + k]
                        s_lanes[k] += (w0 + w1) + (w2 + w3)
                        q_lanes[k] += (w0 * x0 + w1 * x1) + (w2 * x2 + w3 * x3)
                    blk += 4 * W
                while blk < stop:  # the chunk's last blocks, the last one possibly short
                    hi = min(blk + W, stop)
                    gb, vb, wb = g[blk:hi], v[blk:hi], weight[blk:hi]
                    pwb, pbb = pw[blk:hi], pb[blk:hi]
                    for k in range(gb.size):
                        xhat = (vb[k] - mu_t) * r_t
                        gk = gb[k]
                        pwb[k] += gk * xhat
                        pbb[k] += gk
                        gw = gk * wb[k]
                        s_lanes[k] += gw
                        q_lanes[k] += gw * xhat
                    blk += W
                a += combine_lanes(s_lanes)
                b += combine_lanes(q_lanes)
            if need_dx:
                # dx = r * (g * w - mean(g * w) - xhat * mean(g * w * xhat)), xhat = (v - mu) * r
                c1, c0 = x.dtype.type(b / D), x.dtype.type(a / D)
                d = dx[m]
                for i in range(D):
                    d[i] = r_t * (g[i] * weight[i] - c0 - (v[i] - mu_t) * r_t * c1)
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
        lanes = np.empty((2, LANES), x.dtype)
        n, g = ng // G, ng % G
        v = x[n, g]
        shift = v[0]
        s, q = _shifted_sums(v, shift, lanes)
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
        lanes = np.empty((2, LANES), x.dtype)
        n, g = ng // G, ng % G
        gr, v = grad[n, g], x[n, g]
        mu, r = np.float64(mean[n, g]), np.float64(rstd[n, g])
        mu_t, r_t = x.dtype.type(mu), x.dtype.type(r)
        a = b = 0.0
        for j in range(Cg):
            c = g * Cg + j
            sg, sgd = _grad_sums(gr[j * S : (j + 1) * S], v[j * S : (j + 1) * S], mu_t, lanes)
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
