"""Pooling kernels over (planes, H, W) arrays, planes = N * C, direct loops (no im2col: each
output reads its own small window once).

The op has computed the output size (ceil_mode included) and validated the geometry.
"""

import numpy as np
from numba import prange

from firefly.kernels._jit import (
    PARALLEL_MIN_MEMORY_BOUND,
    driven_kernel,
    inline_helper,
    kernel_driver,
    memory_bound,
    run_shares,
    thread_count,
)
from firefly.kernels._shares import each_share, share_range


@inline_helper
def _taps(start, k, d, size):
    """The window taps [lo, hi) of a window starting at ``start`` with dilation d that fall
    inside [0, size)."""
    lo = 0 if start >= 0 else (-start + d - 1) // d
    hi = k if start + (k - 1) * d < size else (size - 1 - start) // d + 1
    return lo, max(hi, lo)


@inline_helper
def _max_pool_2x2(x, argmax, out):
    """The common 2x2, stride-2 window inside the plane, unrolled: the generic loop's short
    variable-length inner loops cost more than the comparisons (2.6x slower at 8x8 planes)."""
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(planes):
        for oy in range(OH):
            r0, r1 = x[p, 2 * oy], x[p, 2 * oy + 1]
            o, a = out[p, oy], argmax[p, oy]
            for ox in range(OW):
                i = 2 * ox
                best, where = r0[i], 0
                v = r0[i + 1]
                take = (v > best) | (v != v)
                best, where = (v, 1) if take else (best, where)
                v = r1[i]
                take = (v > best) | (v != v)
                best, where = (v, W) if take else (best, where)
                v = r1[i + 1]
                take = (v > best) | (v != v)
                best, where = (v, W + 1) if take else (best, where)
                o[ox] = best
                a[ox] = 2 * oy * W + i + where


@kernel_driver
def max_pool2d_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, argmax, out):
    """out = the max of each window, argmax = its flat index in the input plane; padding counts
    as -inf. As in torch, the first maximum in scan order wins and a NaN beats any number (the
    last NaN, as torch's ``val > max || isnan(val)``).

    From PARALLEL_MIN_MEMORY_BOUND elements the planes are shared out over Numba's threads,
    each running the serial kernel on its block (``run_shares``): a prange build compiled in
    three to four times the serial kernel's time, and the digits CNN needed it for its
    evaluation pass alone."""
    threads = 1
    if max(x.size, out.size) >= PARALLEL_MIN_MEMORY_BOUND:
        threads = min(thread_count(), x.shape[0])
    run_shares(_max_pool2d_planes, threads, x, kh, kw, sh, sw, ph, pw, dh, dw, argmax, out)


@driven_kernel
def _max_pool2d_planes(t, threads, x_all, kh, kw, sh, sw, ph, pw, dh, dw, argmax_all, out_all):
    """max_pool2d_forward over share t of ``threads`` of the planes of ``x_all`` (planes, H,
    W), serially."""
    if t < 0:
        return each_share(threads)
    p0, p1 = share_range(t, threads, x_all.shape[0])
    x, argmax, out = x_all[p0:p1], argmax_all[p0:p1], out_all[p0:p1]
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    if (
        kh == 2
        and kw == 2
        and sh == 2
        and sw == 2
        and ph == 0
        and pw == 0
        and dh == 1
        and dw == 1
        and 2 * OH <= H
        and 2 * OW <= W
    ):
        _max_pool_2x2(x, argmax, out)
        return
    for p in range(planes):
        plane = x[p].reshape(-1)
        for oy in range(OH):
            y0 = oy * sh - ph
            ky0, ky1 = _taps(y0, kh, dh, H)
            for ox in range(OW):
                x0 = ox * sw - pw
                kx0, kx1 = _taps(x0, kw, dw, W)
                where = (y0 + ky0 * dh) * W + x0 + kx0 * dw
                best = -np.inf
                for ky in range(ky0, ky1):
                    base = (y0 + ky * dh) * W + x0
                    for kx in range(kx0, kx1):
                        v = plane[base + kx * dw]
                        if v > best or v != v:
                            best = v
                            where = base + kx * dw
                out[p, oy, ox] = best
                argmax[p, oy, ox] = where


@memory_bound
def max_pool2d_backward(grad, argmax, dx):
    """dx[plane, argmax] += grad: each window's gradient goes to its maximum."""
    planes = grad.shape[0]
    per_plane = grad.shape[1] * grad.shape[2]
    for p in prange(planes):
        d = dx[p].reshape(-1)
        d[:] = 0.0
        g, a = grad[p].reshape(-1), argmax[p].reshape(-1)
        for i in range(per_plane):
            d[a[i]] += g[i]


@inline_helper
def _avg_span(o, s, p, k, size):
    """Output position o's window along one axis: [a, b) inside the input, and its length
    clipped to the padded input (count_include_pad's count)."""
    lo = o * s - p
    hi = min(lo + k, size + p)
    return max(lo, 0), min(hi, size), hi - lo


@inline_helper
def _avg_count(divisor, count_include_pad, ya, yb, fy, xa, xb, fx):
    """The forward's divisor of one window (torch's rule)."""
    if divisor > 0:
        return divisor
    if count_include_pad:
        return fy * fx
    return (yb - ya) * (xb - xa)


@memory_bound
def avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, out):
    """out = the mean of each window, with torch's divisor: the window clipped to the padded
    input (count_include_pad), or to the input, or ``divisor`` when it is positive."""
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(planes):
        plane = x[p]
        for oy in range(OH):
            ya, yb, fy = _avg_span(oy, sh, ph, kh, H)
            for ox in range(OW):
                xa, xb, fx = _avg_span(ox, sw, pw, kw, W)
                s = 0.0
                for y in range(ya, yb):
                    row = plane[y]
                    for i in range(xa, xb):
                        s += row[i]
                out[p, oy, ox] = s / _avg_count(divisor, count_include_pad, ya, yb, fy, xa, xb, fx)


@memory_bound
def avg_pool2d_backward(grad, kh, kw, sh, sw, ph, pw, count_include_pad, divisor, dx):
    """dx: each window's gradient spread evenly over its elements, with the forward's divisor."""
    planes, H, W = dx.shape
    OH, OW = grad.shape[1], grad.shape[2]
    for p in prange(planes):
        plane = dx[p]
        plane[...] = 0.0
        for oy in range(OH):
            ya, yb, fy = _avg_span(oy, sh, ph, kh, H)
            for ox in range(OW):
                xa, xb, fx = _avg_span(ox, sw, pw, kw, W)
                g = grad[p, oy, ox] / _avg_count(divisor, count_include_pad, ya, yb, fy, xa, xb, fx)
                for y in range(ya, yb):
                    row = plane[y]
                    for i in range(xa, xb):
                        row[i] += g


@inline_helper
def _adaptive_span(o, size, out_size):
    """Output position o's window along one axis: [floor(o*size/out), ceil((o+1)*size/out))."""
    return (o * size) // out_size, -((-(o + 1) * size) // out_size)


@memory_bound
def adaptive_avg_pool2d_forward(x, out):
    """Output cell (i, j) averages rows floor(i*H/OH) .. ceil((i+1)*H/OH) and likewise columns."""
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(planes):
        plane = x[p]
        for oy in range(OH):
            ya, yb = _adaptive_span(oy, H, OH)
            for ox in range(OW):
                xa, xb = _adaptive_span(ox, W, OW)
                s = 0.0
                for y in range(ya, yb):
                    row = plane[y]
                    for i in range(xa, xb):
                        s += row[i]
                out[p, oy, ox] = s / ((yb - ya) * (xb - xa))


@memory_bound
def adaptive_avg_pool2d_backward(grad, dx):
    planes, H, W = dx.shape
    OH, OW = grad.shape[1], grad.shape[2]
    for p in prange(planes):
        plane = dx[p]
        plane[...] = 0.0
        for oy in range(OH):
            ya, yb = _adaptive_span(oy, H, OH)
            for ox in range(OW):
                xa, xb = _adaptive_span(ox, W, OW)
                g = grad[p, oy, ox] / ((yb - ya) * (xb - xa))
                for y in range(ya, yb):
                    row = plane[y]
                    for i in range(xa, xb):
                        row[i] += g


@memory_bound
def adaptive_max_pool2d_forward(x, argmax, out):
    """out = the max of each adaptive window (adaptive_avg_pool2d's windows), argmax = its flat
    index in the plane; NaN wins and the first maximum in scan order is kept, as in torch."""
    planes, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in prange(planes):
        plane = x[p]
        for oy in range(OH):
            ya, yb = _adaptive_span(oy, H, OH)
            for ox in range(OW):
                xa, xb = _adaptive_span(ox, W, OW)
                best, where = plane[ya, xa], ya * W + xa
                for y in range(ya, yb):
                    row = plane[y]
                    for i in range(xa, xb):
                        v = row[i]
                        if v > best or v != v:
                            best, where = v, y * W + i
                out[p, oy, ox] = best
                argmax[p, oy, ox] = where


@memory_bound
def max_unpool_forward(x, indices, out):
    """out[p] = zeros with x[p, i] written at indices[p, i], per plane; a repeated index keeps
    the last write, as torch's loop does. The op has checked every index against the plane."""
    planes, count = x.shape
    for p in prange(planes):
        o = out[p]
        o[:] = 0.0
        for i in range(count):
            o[indices[p, i]] = x[p, i]


@memory_bound
def max_unpool_backward(grad, indices, dx):
    """dx[p, i] = grad[p, indices[p, i]]: torch's gradient, which reads a repeated index's
    gradient for every input written there."""
    planes, count = dx.shape
    for p in prange(planes):
        for i in range(count):
            dx[p, i] = grad[p, indices[p, i]]
