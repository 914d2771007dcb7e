"""Convolution kernels: im2col into a (groups, taps, N * positions) matrix, one BLAS product per
group, and the output written back as NCHW.

The column matrix puts every sample's output positions side by side, so each group is a single
GEMM however small the images are (one product per sample costs a BLAS call per sample, which
dominates at 8x8).

Two column layouts ("im2col" below):

- exact: one column per output position. Each tap copies OW elements per output row: at 8x8
  images those runs are so short that the loop overhead, not memory, sets the time.
- wide (stride 1 only): the input is copied once into zero-padded planes, and every output row
  is computed at all Wp padded columns, of which the last Wp - OW are discarded. A tap's
  columns for one sample are then a single contiguous run of OH * Wp elements of the padded
  plane, and col2im a single contiguous add. The GEMMs do Wp / OW times the work, which the
  op weighs against the cheaper copies (see ``firefly.ops.conv``).

The op has already validated shapes, strides, paddings and dilations; these loops index
without bounds checks.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound


@inline_helper
def _valid_range(k, dilation, padding, stride, size, out_size):
    """Output positions [lo, hi) whose input index o*stride - padding + k*dilation is inside [0, size)."""
    offset = k * dilation - padding
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = 0
    if size - offset > 0:
        hi = (size - offset - 1) // stride + 1
    return min(lo, out_size), min(max(hi, 0), out_size)


@memory_bound
def conv2d_forward(x, weight, bias, sh, sw, ph, pw, dh, dw, wide, planes, cols, product, out):
    """out = conv(x, weight) + bias; fills ``cols`` (groups, Cg*KH*KW, N*OH*Q) for backward,
    with Q = OW (exact layout) or Q = Wp, the padded width (wide layout, stride 1, where
    ``planes`` (N, C, Hp*Wp + (KW-1)*dw) receives the zero-padded input). ``product``
    (O / groups, N*OH*Q) is scratch for one group's GEMM.

    x (N, C, H, W), weight (O, Cg, KH, KW), bias (O,), out (N, O, OH, OW); groups = C // Cg.
    """
    N, C, H, W = x.shape
    O, Cg, KH, KW = weight.shape
    OH, OW = out.shape[2], out.shape[3]
    groups = cols.shape[0]
    taps = Cg * KH * KW
    Q = cols.shape[2] // (N * OH)
    P = OH * Q
    if wide:
        for nc in prange(N * C):
            n, c = nc // C, nc % C
            dst, src = planes[n, c], x[n, c]
            dst[:] = 0.0
            for y in range(H):
                d, s = dst[(y + ph) * Q + pw:(y + ph) * Q + pw + W], src[y]
                for i in range(W):
                    d[i] = s[i]
        for r in prange(groups * taps):
            g, t = r // taps, r % taps
            c = g * Cg + t // (KH * KW)
            ky, kx = (t // KW) % KH, t % KW
            row = cols[g, t]
            offset = ky * dh * Q + kx * dw
            for n in range(N):
                d, s = row[n * P:(n + 1) * P], planes[n, c, offset:offset + P]
                for q in range(P):
                    d[q] = s[q]
    else:
        for r in prange(groups * taps):
            g, t = r // taps, r % taps
            c = g * Cg + t // (KH * KW)
            ky, kx = (t // KW) % KH, t % KW
            row = cols[g, t]
            y_lo, y_hi = _valid_range(ky, dh, ph, sh, H, OH)
            x_lo, x_hi = _valid_range(kx, dw, pw, sw, W, OW)
            start = x_lo * sw - pw + kx * dw
            for n in range(N):
                plane = x[n, c]
                for oy in range(OH):
                    d = row[n * P + oy * OW:n * P + (oy + 1) * OW]
                    if oy < y_lo or oy >= y_hi:
                        d[:] = 0.0
                        continue
                    src = plane[oy * sh - ph + ky * dh]
                    d[:x_lo] = 0.0
                    d[max(x_hi, x_lo):] = 0.0
                    if sw == 1:
                        s = src[start:start + x_hi - x_lo]
                        v = d[x_lo:x_hi]
                        for i in range(x_hi - x_lo):
                            v[i] = s[i]
                    else:
                        for ox in range(x_lo, x_hi):
                            d[ox] = src[start + (ox - x_lo) * sw]
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
def conv2d_backward(grad, weight, cols, sh, sw, ph, pw, dh, dw, wide, need_dx, g2, dcols, planes, dweight, dbias, dx):
    """dweight = grad x cols^T, dbias = grad summed over N and positions, and (if need_dx)
    dx = col2im(weight^T x grad). ``cols`` is what conv2d_forward filled, in the same layout.
    Scratch: ``g2`` (O, N*OH*Q), and for dx ``dcols`` (Cg*KH*KW, N*OH*Q) and, in the wide
    layout, ``planes`` as in the forward."""
    N, O, OH, OW = grad.shape
    _, Cg, KH, KW = weight.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    groups = cols.shape[0]
    taps = Cg * KH * KW
    Q = cols.shape[2] // (N * OH)
    P = OH * Q
    Og = O // groups
    # grad in the layout of the forward product, (O, N * P); zeros in the wide layout's extra columns
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
    for g in range(groups):
        np.dot(g2[g * Og:(g + 1) * Og], cols[g].T, dw2[g])
    if not need_dx:
        return
    # In the wide layout an extra column's gradient is zero and lands harmlessly in the planes.
    for g in range(groups):
        np.dot(w2[g].T, g2[g * Og:(g + 1) * Og], dcols)
        # Rows of one input channel add into the same plane: one task per channel of the group.
        for cl in prange(Cg):
            c = g * Cg + cl
            if wide:
                for n in range(N):
                    dst = planes[n, c]
                    dst[:] = 0.0
                    for t in range(cl * KH * KW, (cl + 1) * KH * KW):
                        ky, kx = (t // KW) % KH, t % KW
                        offset = ky * dh * Q + kx * dw
                        d, src = dst[offset:offset + P], dcols[t, n * P:(n + 1) * P]
                        for q in range(P):
                            d[q] += src[q]
                    out_plane = dx[n, c]
                    for y in range(H):
                        d, src = out_plane[y], dst[(y + ph) * Q + pw:(y + ph) * Q + pw + W]
                        for i in range(W):
                            d[i] = src[i]
            else:
                for n in range(N):
                    dx[n, c] = 0.0
                for t in range(cl * KH * KW, (cl + 1) * KH * KW):
                    ky, kx = (t // KW) % KH, t % KW
                    row = dcols[t]
                    y_lo, y_hi = _valid_range(ky, dh, ph, sh, H, OH)
                    x_lo, x_hi = _valid_range(kx, dw, pw, sw, W, OW)
                    start = x_lo * sw - pw + kx * dw
                    for n in range(N):
                        plane = dx[n, c]
                        for oy in range(y_lo, y_hi):
                            dst = plane[oy * sh - ph + ky * dh]
                            src = row[n * P + oy * OW + x_lo:n * P + oy * OW + x_hi]
                            if sw == 1:
                                d = dst[start:start + x_hi - x_lo]
                                for i in range(x_hi - x_lo):
                                    d[i] += src[i]
                            else:
                                for i in range(x_hi - x_lo):
                                    dst[start + i * sw] += src[i]
