"""Convolution kernels: im2col into a (groups, taps, N * positions) matrix, one BLAS product per
group, and the output written back as NCHW.

The column matrix puts every sample's output positions side by side, so each group is a single
GEMM however small the images are (one product per sample costs a BLAS call per sample, which
dominates at 8x8).

The input is first copied into zero-padded planes (N, C, Hp * Wp + tail), so that no copy
below tests bounds. Two column layouts ("im2col"):

- exact: one column per output position; a tap's row for one sample is a gather through a
  table of the output positions' offsets in the padded plane (any stride).
- wide (stride 1 only): every output row is computed at all Wp padded columns, of which the
  last Wp - OW are discarded. A tap's columns for one sample are then one contiguous run of
  OH * Wp elements of the padded plane (the tail of (KW - 1) * dw zeros keeps the last run
  inside), and col2im one contiguous add. The GEMMs do Wp / OW times the work, which the op
  weighs against the cheaper copies (see ``firefly.ops.conv``).

The op has already validated shapes, strides, paddings and dilations; these loops index
without bounds checks.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound


@inline_helper
def _positions(OH, OW, sh, sw, Wp):
    """Offsets in a padded plane of row width Wp of each output position's window corner."""
    idx = np.empty(OH * OW, dtype=np.int64)
    for oy in range(OH):
        for ox in range(OW):
            idx[oy * OW + ox] = oy * sh * Wp + ox * sw
    return idx


@memory_bound
def conv2d_forward(x, weight, bias, sh, sw, ph, pw, dh, dw, Wp, wide, planes, cols, product, out):
    """out = conv(x, weight) + bias; fills ``cols`` (groups, Cg*KH*KW, N*OH*Q) for backward,
    with Q = OW (exact layout) or Q = Wp (wide layout, stride 1). ``planes`` (N, C, Hp*Wp +
    tail) receives the zero-padded input; ``product`` (O / groups, N*OH*Q) is scratch for one
    group's GEMM.

    x (N, C, H, W), weight (O, Cg, KH, KW), bias (O,), out (N, O, OH, OW); groups = C // Cg.
    """
    N, C, H, W = x.shape
    O, Cg, KH, KW = weight.shape
    OH, OW = out.shape[2], out.shape[3]
    groups = cols.shape[0]
    taps = Cg * KH * KW
    Q = cols.shape[2] // (N * OH)
    P = OH * Q
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dst, src = planes[n, c], x[n, c]
        dst[:] = 0.0
        for y in range(H):
            d, s = dst[(y + ph) * Wp + pw:(y + ph) * Wp + pw + W], src[y]
            for i in range(W):
                d[i] = s[i]
    idx = _positions(OH, OW, sh, sw, Wp)
    for r in prange(groups * taps):
        g, t = r // taps, r % taps
        c = g * Cg + t // (KH * KW)
        ky, kx = (t // KW) % KH, t % KW
        row = cols[g, t]
        offset = ky * dh * Wp + kx * dw
        for n in range(N):
            d = row[n * P:(n + 1) * P]
            if wide:
                s = planes[n, c, offset:offset + P]
                for q in range(P):
                    d[q] = s[q]
            else:
                s = planes[n, c, offset:]
                for q in range(P):
                    d[q] = s[idx[q]]
    Og = O // groups
    w2 = weight.reshape(groups, Og, taps)
    for g in range(groups):
        np.dot(w2[g], cols[g], product)
        for n in prange(N):
            for o in range(Og):
                b = bias[g * Og + o]
                dst = out[n, g * Og + o]
                for oy in range(OH):
                    d, s = dst[oy], product[o, n * P + oy * Q:n * P + oy * Q + OW]
                    for ox in range(OW):
                        d[ox] = s[ox] + b


@memory_bound
def conv2d_backward(grad, weight, cols, sh, sw, ph, pw, dh, dw, Wp, wide, need_dx, g2, dcols, planes, dweight,
                    dbias, dx):
    """dweight = grad x cols^T, dbias = grad summed over N and positions, and (if need_dx)
    dx = col2im(weight^T x grad). ``cols`` is what conv2d_forward filled, in the same layout.
    Scratch: ``g2`` (O, N*OH*Q), and for dx ``dcols`` (Cg*KH*KW, N*OH*Q) and ``planes`` as in
    the forward, which the column gradients are added into before the padding is cropped."""
    N, O, OH, OW = grad.shape
    _, Cg, KH, KW = weight.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    groups = cols.shape[0]
    taps = Cg * KH * KW
    Q = cols.shape[2] // (N * OH)
    P = OH * Q
    Og = O // groups
    # grad in the layout of the forward product, (O, N * P); zeros in the wide layout's extra
    # columns, whose gradient then lands harmlessly in the planes' padding.
    for o in prange(O):
        s = 0.0
        for n in range(N):
            for oy in range(OH):
                d, src = g2[o, n * P + oy * Q:n * P + (oy + 1) * Q], grad[n, o, oy]
                for ox in range(OW):
                    d[ox] = src[ox]
                    s += src[ox]
                d[OW:] = 0.0
        dbias[o] = s
    w2 = weight.reshape(groups, Og, taps)
    dw2 = dweight.reshape(groups, Og, taps)
    # dweight^T = cols x grad^T: BLAS runs this orientation faster than grad x cols^T (the long
    # N*P dimension is the inner one of both operands' rows).
    dw_t = np.empty((taps, Og), dtype=dweight.dtype)
    for g in range(groups):
        np.dot(cols[g], g2[g * Og:(g + 1) * Og].T, dw_t)
        for o in range(Og):
            for t in range(taps):
                dw2[g, o, t] = dw_t[t, o]
    if not need_dx:
        return
    idx = _positions(OH, OW, sh, sw, Wp)
    for g in range(groups):
        np.dot(w2[g].T, g2[g * Og:(g + 1) * Og], dcols)
        # Rows of one input channel add into the same plane: one task per channel of the group.
        for cl in prange(Cg):
            c = g * Cg + cl
            for n in range(N):
                dst = planes[n, c]
                dst[:] = 0.0
                for t in range(cl * KH * KW, (cl + 1) * KH * KW):
                    ky, kx = (t // KW) % KH, t % KW
                    offset = ky * dh * Wp + kx * dw
                    src = dcols[t, n * P:(n + 1) * P]
                    if wide:
                        d = dst[offset:offset + P]
                        for q in range(P):
                            d[q] += src[q]
                    elif sw == 1:  # runs of OW contiguous elements (measured 5% faster than the scatter)
                        for oy in range(OH):
                            d = dst[offset + oy * sh * Wp:offset + oy * sh * Wp + OW]
                            sr = src[oy * OW:(oy + 1) * OW]
                            for ox in range(OW):
                                d[ox] += sr[ox]
                    else:
                        d = dst[offset:]
                        for q in range(P):
                            d[idx[q]] += src[q]
                out_plane = dx[n, c]
                for y in range(H):
                    d, s = out_plane[y], dst[(y + ph) * Wp + pw:(y + ph) * Wp + pw + W]
                    for i in range(W):
                        d[i] = s[i]
