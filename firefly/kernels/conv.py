"""Convolution kernels: im2col into a position-major column matrix (groups, N * OH * OW, taps),
one BLAS product per group, and the output written back as NCHW.

The column matrix puts every sample's output positions one under the other, so each group is
a single GEMM however small the images are (one product per sample costs a BLAS call per
sample, which dominates at 8x8). Positions-by-taps is also the orientation that OpenBLAS runs
fastest here: (N*P, taps) x (taps, Og) took 212 us where (Og, taps) x (taps, N*P) took 272
(float32, 16 -> 32 channels 3x3 on 8x8, batch 64, 2 threads).

A row's taps are ordered (ky, kx, channel of the group) and copied from a zero-padded
channels-last copy of the input, ``planes`` (N, Hp, Wp * C), so that no copy tests bounds and
the copies are runs rather than gathers: one kernel row's KW taps of every channel are
adjacent in a padded row when groups == 1 and dw == 1 (one run of KW * C), and otherwise each
tap's Cg channels are (KW runs of Cg). col2im adds the same runs back.

The op has already validated shapes, strides, paddings and dilations; these loops index
without bounds checks.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound

# Runs shorter than this are copied by index; longer ones through slices, whose indices LLVM
# knows to be non-negative, so that the loop vectorizes (copying runs of 48 by index took
# 365 us, through slices 83; runs of 3 through slices took 61 us, by index 23).
SHORT_RUN = 8


@inline_helper
def _runs(groups, dw, KW, Cg):
    """(length, count) of the contiguous runs that one kernel row's taps make in a padded row."""
    if groups == 1 and dw == 1:
        return KW * Cg, 1
    return Cg, KW


@inline_helper
def _taps_major(weight, groups):
    """weight (O, Cg, KH, KW) as (groups, taps, O / groups), taps in the columns' order."""
    O, Cg, KH, KW = weight.shape
    Og = O // groups
    wr = np.empty((groups, KH * KW * Cg, Og), dtype=weight.dtype)
    for o in range(O):
        for cg in range(Cg):
            for ky in range(KH):
                for kx in range(KW):
                    wr[o // Og, (ky * KW + kx) * Cg + cg, o % Og] = weight[o, cg, ky, kx]
    return wr


@memory_bound
def conv2d_forward(x, weight, bias, sh, sw, ph, pw, dh, dw, planes, cols, product, out):
    """out = conv(x, weight) + bias; fills ``cols`` (groups, N*OH*OW, Cg*KH*KW) for backward.
    ``planes`` (N, Hp, Wp*C) receives the zero-padded channels-last input; ``product``
    (N*OH*OW, O / groups) is scratch for one group's GEMM.

    x (N, C, H, W), weight (O, Cg, KH, KW), bias (O,), out (N, O, OH, OW); groups = C // Cg.
    """
    N, C, H, W = x.shape
    O, Cg, KH, KW = weight.shape
    OH, OW = out.shape[2], out.shape[3]
    Hp = planes.shape[1]
    groups = cols.shape[0]
    P = OH * OW
    # Every element of the planes is written once: padding rows and columns as zeros.
    for ny in prange(N * Hp):
        n, yp = ny // Hp, ny % Hp
        row = planes[n, yp]
        y = yp - ph
        if y < 0 or y >= H:
            row[:] = 0.0
            continue
        row[:pw * C] = 0.0
        row[(pw + W) * C:] = 0.0
        inner = row[pw * C:(pw + W) * C].reshape(W, C)
        for c in range(C):
            s = x[n, c, y]
            for i in range(W):
                inner[i, c] = s[i]
    run, runs = _runs(groups, dw, KW, Cg)
    for r in prange(N * OH):
        n, oy = r // OH, r % OH
        for g in range(groups):
            for ox in range(OW):
                d = cols[g, r * OW + ox]
                for ky in range(KH):
                    src = planes[n, oy * sh + ky * dh]
                    for k in range(runs):
                        base, t0 = (ox * sw + k * dw) * C + g * Cg, (ky * runs + k) * run
                        if run < SHORT_RUN:
                            for i in range(run):
                                d[t0 + i] = src[base + i]
                        else:
                            dd, ss = d[t0:t0 + run], src[base:base + run]
                            for i in range(run):
                                dd[i] = ss[i]
    Og = O // groups
    wr = _taps_major(weight, groups)
    for g in range(groups):
        np.dot(cols[g], wr[g], product)
        for n in prange(N):
            for o in range(Og):
                b = bias[g * Og + o]
                dst = out[n, g * Og + o]
                for oy in range(OH):
                    d, s = dst[oy], product[n * P + oy * OW:n * P + (oy + 1) * OW, o]
                    for ox in range(OW):
                        d[ox] = s[ox] + b


@memory_bound
def conv2d_backward(grad, weight, cols, sh, sw, ph, pw, dh, dw, need_dx, g2, dcols, planes, dweight, dbias, dx):
    """dweight = cols^T x grad, dbias = grad summed over N and positions, and (if need_dx)
    dx = col2im(grad x weight). ``cols`` is what conv2d_forward filled. Scratch: ``g2``
    (groups, N*OH*OW, O / groups), and for dx ``dcols`` shaped as ``cols`` and ``planes`` as in
    the forward, which the column gradients are added into before the padding is cropped."""
    N, O, OH, OW = grad.shape
    _, Cg, KH, KW = weight.shape
    groups = cols.shape[0]
    P = OH * OW
    Og = O // groups
    # grad in the layout of the forward product, one (N * P, Og) matrix per group.
    for o in prange(O):
        g, ol = o // Og, o % Og
        s = 0.0
        for n in range(N):
            for oy in range(OH):
                src, d = grad[n, o, oy], g2[g, n * P + oy * OW:n * P + (oy + 1) * OW, ol]
                for ox in range(OW):
                    d[ox] = src[ox]
                    s += src[ox]
        dbias[o] = s
    # dweight as (taps, Og) = cols^T x grad: OpenBLAS ran this orientation in 313 us, its
    # transpose grad^T x cols in 474 (the shapes of the module docstring).
    dw_t = np.empty((cols.shape[2], Og), dtype=dweight.dtype)
    for g in range(groups):
        np.dot(cols[g].T, g2[g], dw_t)
        for o in range(Og):
            for cg in range(Cg):
                for ky in range(KH):
                    for kx in range(KW):
                        dweight[g * Og + o, cg, ky, kx] = dw_t[(ky * KW + kx) * Cg + cg, o]
    if not need_dx:
        return
    wr = _taps_major(weight, groups)
    for g in range(groups):
        np.dot(g2[g], wr[g].T, dcols[g])
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    run, runs = _runs(groups, dw, KW, Cg)
    # Windows of one sample overlap in its plane: one task per sample.
    for n in prange(N):
        plane = planes[n]
        plane[:, :] = 0.0
        for g in range(groups):
            for oy in range(OH):
                for ox in range(OW):
                    s = dcols[g, n * P + oy * OW + ox]
                    for ky in range(KH):
                        dst = plane[oy * sh + ky * dh]
                        for k in range(runs):
                            base, t0 = (ox * sw + k * dw) * C + g * Cg, (ky * runs + k) * run
                            if run < SHORT_RUN:
                                for i in range(run):
                                    dst[base + i] += s[t0 + i]
                            else:
                                dd, ss = dst[base:base + run], s[t0:t0 + run]
                                for i in range(run):
                                    dd[i] += ss[i]
        for y in range(H):
            inner = plane[y + ph, pw * C:(pw + W) * C].reshape(W, C)
            for c in range(C):
                d = dx[n, c, y]
                for i in range(W):
                    d[i] = inner[i, c]
