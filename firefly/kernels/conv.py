"""Convolution kernels: im2col into a column matrix, one BLAS product per group, and the output
written back as NCHW. The column matrix puts every sample's output positions together, so each
group is a single GEMM however small the images are (one product per sample costs a BLAS call
per sample, which dominates at 8x8).

Two column layouts, each with its own forward/backward pair; the op picks one per call
(``firefly.ops.conv.column_layout``):

- taps-major (``conv2d_taps_*``), cols (groups, Cg*KH*KW, N*OH*Q): one row per tap, ordered
  (channel, ky, kx), copied from zero-padded planes (N, C, Hp * Wp + tail). Each copy is one
  tap of one sample, as long however few the channels are. These kernels are serial: their
  parallel builds ran only on large inputs (``PARALLEL_MIN_MEMORY_BOUND`` elements: the digits
  CNN's first layer at a batch of a thousand images, its evaluation pass) and cost a second
  compile of each kernel, longer than the serial one. Two variants of it:

  - exact (Q = OW): one column per output position; a tap's row for one sample is a gather
    through a table of the output positions' offsets in the padded plane (any stride).
  - wide (Q = Wp, stride 1 only): every output row is computed at all Wp padded columns, of
    which the last Wp - OW are discarded. A tap's columns for one sample are then one
    contiguous run of OH * Wp elements of the padded plane (the tail of (KW - 1) * dw zeros
    keeps the last run inside), and col2im one contiguous add. The GEMMs do Wp / OW times
    the work, which the op weighs against the cheaper copies.

- position-major (``conv2d_positions_*``), cols (groups, N*OH*OW, Cg*KH*KW): one row per
  output position, taps ordered (ky, kx, channel of the group), copied from a zero-padded
  channels-last copy of the input, ``planes`` (N, Hp, Wp * C). One kernel row's KW taps of
  every channel are adjacent in a padded row when groups == 1 and dw == 1 (one run of KW * C),
  and otherwise each tap's Cg channels are (KW runs of Cg). col2im adds the same runs back.
  Positions-by-taps is also the orientation that OpenBLAS runs fastest here: (N*P, taps) x
  (taps, Og) took 212 us where (Og, taps) x (taps, N*P) took 272 (float32, 16 -> 32
  channels 3x3 on 8x8, batch 64, 2 threads). Each of Numba's thread count of threads takes a
  contiguous block of samples and does everything for them (padding, columns, its rows of the
  GEMMs with single-threaded BLAS, col2im, and its own part of dweight and dbias), so that the
  GEMMs of these small images use every core. The shares run one serial kernel on Numba's
  threads (``_jit.run_shares``: the kernel runs its own shares through the threading layer),
  not a prange: a prange kernel re-optimizes the helper its body calls twice more, which
  tripled these kernels' compile time.

The op takes position-major when its runs are long (KW * Cg of 16 or more, e.g. 6 channels at
3x3), except where the wide variant adds at most a tenth of columns (large padded images),
whose whole-image copies then win; and taps-major for runs of a few values (one to four input
channels at 3x3), where copying runs costs more than copying whole taps.

A 1x1 convolution with stride 1 and no padding (``conv2d_pointwise_*``) needs no columns: an
image's (C, H*W) plane is already the GEMM's operand, so each sample is one product per group
straight into the output, with no copies before or after; the samples are shared out over the
Numba threads, each with single-threaded BLAS (their products are too small for OpenBLAS to
split well).

Images of 256 output positions or more take the tiled kernels (``conv2d_tiles_*``): per Numba
thread, a sample (or a few) at a time, in blocks of output rows whose taps-major columns stay
in cache. Their wide columns work at strides across of 1 and 2 (and any stride down): the
padded planes are split into the stride's phases (``_pad_samples``; at stride 2, four planes
of the even and odd rows and columns), in which every tap's columns are again one contiguous
run (``_tap_source``). With wide columns
and 8 channels per group or more they skip the columns in the forward and the input gradient
(``_shifted_products``, ``_shifted_column_grads_add``).

The float32 products whose right operand has contiguous rows run through the register-tile
micro-kernel (``microkernel.gemm``), which ran these skinny products faster than OpenBLAS
(docs/performance.md); the weight gradients' products of the tiled, taps-major and 1x1
kernels, whose right operand is a transposed view, and all float64 products go through
``cblas.gemm_views`` (NumPy's OpenBLAS; every operand here has its rows or columns contiguous,
so no copies are compiled in).

The op has already validated shapes, strides, paddings and dilations; these loops index
without bounds checks.
"""

import numpy as np
from numba import prange

from firefly.kernels import microkernel
from firefly.kernels._jit import (
    called_helper,
    driven_kernel,
    inline_helper,
    kernel,
    kernel_driver,
    memory_bound,
    run_shares,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.cblas import gemm_views


@inline_helper
def _window_offsets(OH, OW, sh, sw, Wp):
    """Offsets in a padded plane of row width Wp of each output position's window corner."""
    idx = np.empty(OH * OW, dtype=np.int64)
    for oy in range(OH):
        for ox in range(OW):
            idx[oy * OW + ox] = oy * sh * Wp + ox * sw
    return idx


@inline_helper
def _write_sample(product, bias, g, n, Q, out):
    """Sample n's channels of group g into ``out`` (N, O, OH, OW), plus the bias: ``product``
    is the group's GEMM result as (Og, N * OH * Q), Q >= OW columns per output row (a view of
    the transposed product in the position-major layout)."""
    OH, OW = out.shape[2], out.shape[3]
    Og = product.shape[0]
    P = OH * Q
    for o in range(Og):
        b = bias[g * Og + o]
        dst = out[n, g * Og + o]
        for oy in range(OH):
            d, s = dst[oy], product[o, n * P + oy * Q : n * P + oy * Q + OW]
            for ox in range(OW):
                d[ox] = s[ox] + b


@kernel
def conv2d_taps_forward(
    x, weight, bias, sh, sw, ph, pw, dh, dw, Wp, wide, planes, cols, product, out
):
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
    for nc in range(N * C):
        n, c = nc // C, nc % C
        dst, src = planes[n, c], x[n, c]
        dst[:] = 0.0
        for y in range(H):
            d, s = dst[(y + ph) * Wp + pw : (y + ph) * Wp + pw + W], src[y]
            for i in range(W):
                d[i] = s[i]
    idx = _window_offsets(OH, OW, sh, sw, Wp)
    for r in range(groups * taps):
        g, t = r // taps, r % taps
        c = g * Cg + t // (KH * KW)
        ky, kx = (t // KW) % KH, t % KW
        row = cols[g, t]
        offset = ky * dh * Wp + kx * dw
        for n in range(N):
            d = row[n * P : (n + 1) * P]
            if wide:
                s = planes[n, c, offset : offset + P]
                for q in range(P):
                    d[q] = s[q]
            else:
                s = planes[n, c, offset:]
                for q in range(P):
                    d[q] = s[idx[q]]
    Og = O // groups
    w2 = weight.reshape(groups, Og, taps)
    for g in range(groups):
        microkernel.gemm(w2[g], cols[g], product, 0.0)
        for n in range(N):
            _write_sample(product, bias, g, n, Q, out)


@kernel_driver
def conv2d_taps_backward(
    grad,
    weight,
    cols,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    Wp,
    wide,
    need_dx,
    need_dweight,
    g2,
    dcols,
    planes,
    dweight,
    dbias,
    dx,
):
    """dweight = grad x cols^T (if need_dweight), dbias = grad summed over N and positions, and
    (if need_dx) dx = col2im(weight^T x grad). ``cols`` is what conv2d_taps_forward filled, in
    the same layout; without need_dweight only its shape is read (conv_transpose2d's forward is
    this dx).
    Scratch: ``g2`` (O, N*OH*Q), and for dx ``dcols`` (Cg*KH*KW, N*OH*Q) and ``planes`` as in
    the forward, which the column gradients are added into before the padding is cropped.

    The input gradient is a kernel of its own, compiled at its first call: a process that never
    needs it (the digits CNN, whose first layer's input has no gradient) does not compile it,
    about half of what this backward took to compile as one kernel."""
    _taps_weight_grads(grad, weight, cols, need_dweight, g2, dweight, dbias)
    if need_dx:
        _taps_input_grad(
            grad, weight, cols, sh, sw, ph, pw, dh, dw, Wp, wide, g2, dcols, planes, dx
        )


@driven_kernel
def _taps_weight_grads(grad, weight, cols, need_dweight, g2, dweight, dbias):
    """conv2d_taps_backward's dbias and (if need_dweight) dweight, and ``g2``, which its input
    gradient reads."""
    N, O, OH, OW = grad.shape
    _, Cg, KH, KW = weight.shape
    groups = cols.shape[0]
    taps = Cg * KH * KW
    Q = cols.shape[2] // (N * OH)
    P = OH * Q
    Og = O // groups
    # grad in the layout of the forward product, (O, N * P); zeros in the wide layout's extra
    # columns, whose gradient then lands harmlessly in the planes' padding.
    for o in range(O):
        s = 0.0
        for n in range(N):
            for oy in range(OH):
                d, src = g2[o, n * P + oy * Q : n * P + (oy + 1) * Q], grad[n, o, oy]
                for ox in range(OW):
                    d[ox] = src[ox]
                    s += src[ox]
                d[OW:] = 0.0
        dbias[o] = s
    dw2 = dweight.reshape(groups, Og, taps)
    # dweight^T = cols x grad^T: BLAS runs this orientation faster than grad x cols^T (the long
    # N*P dimension is the inner one of both operands' rows).
    dw_t = np.empty((taps, Og), dtype=dweight.dtype)
    for g in range(groups if need_dweight else 0):
        gemm_views(cols[g], g2[g * Og : (g + 1) * Og].T, dw_t, 0.0)
        for o in range(Og):
            for t in range(taps):
                dw2[g, o, t] = dw_t[t, o]


@driven_kernel
def _taps_input_grad(grad, weight, cols, sh, sw, ph, pw, dh, dw, Wp, wide, g2, dcols, planes, dx):
    """conv2d_taps_backward's dx from ``g2`` as ``_taps_weight_grads`` filled it (``grad`` and
    ``cols`` are only read for their shapes)."""
    N, O, OH, OW = grad.shape
    _, Cg, KH, KW = weight.shape
    H, W = dx.shape[2], dx.shape[3]
    groups = cols.shape[0]
    taps = Cg * KH * KW
    Q = cols.shape[2] // (N * OH)
    P = OH * Q
    Og = O // groups
    w2 = weight.reshape(groups, Og, taps)
    idx = _window_offsets(OH, OW, sh, sw, Wp)
    for g in range(groups):
        microkernel.gemm(w2[g].T, g2[g * Og : (g + 1) * Og], dcols, 0.0)
        # Rows of one input channel add into the same plane: a channel of the group at a time.
        for cl in range(Cg):
            c = g * Cg + cl
            for n in range(N):
                dst = planes[n, c]
                dst[:] = 0.0
                for t in range(cl * KH * KW, (cl + 1) * KH * KW):
                    ky, kx = (t // KW) % KH, t % KW
                    offset = ky * dh * Wp + kx * dw
                    src = dcols[t, n * P : (n + 1) * P]
                    if wide:
                        d = dst[offset : offset + P]
                        for q in range(P):
                            d[q] += src[q]
                    elif (
                        sw == 1
                    ):  # runs of OW contiguous elements (measured 5% faster than the scatter)
                        for oy in range(OH):
                            d = dst[offset + oy * sh * Wp : offset + oy * sh * Wp + OW]
                            sr = src[oy * OW : (oy + 1) * OW]
                            for ox in range(OW):
                                d[ox] += sr[ox]
                    else:
                        d = dst[offset:]
                        for q in range(P):
                            d[idx[q]] += src[q]
                out_plane = dx[n, c]
                for y in range(H):
                    d, s = out_plane[y], dst[(y + ph) * Wp + pw : (y + ph) * Wp + pw + W]
                    for i in range(W):
                        d[i] = s[i]


# Position-major runs shorter than this are copied by index; longer ones through slices, whose
# indices LLVM knows to be non-negative, so that the loop vectorizes (copying runs of 48 by
# index took 365 us, through slices 83; runs of 3 through slices took 61 us, by index 23).
SHORT_RUN = 8


@inline_helper
def _runs(groups, dw, KW, Cg):
    """(length, count) of the contiguous runs that one kernel row's taps make in a padded row."""
    if groups == 1 and dw == 1:
        return KW * Cg, 1
    return Cg, KW


def _weight_by_tap(weight, groups):
    """weight (O, Cg, KH, KW) as (groups, taps, O / groups), C-contiguous, taps in the
    columns' order."""
    O, Cg, KH, KW = weight.shape
    by_tap = weight.reshape(groups, O // groups, Cg, KH, KW).transpose(0, 3, 4, 2, 1)
    return np.ascontiguousarray(by_tap).reshape(groups, KH * KW * Cg, O // groups)


@driven_kernel
def _positions_forward_share(
    t, threads, x, weight, wr, bias, sh, sw, ph, pw, dh, dw, planes, cols, product, out
):
    """conv2d_positions_forward for share t of ``threads``, samples n0 .. n1: their padded
    planes, their rows of the columns, their rows of each group's product, and their output.
    ``wr`` is the weight by tap (``_weight_by_tap``)."""
    if t < 0:
        return each_share(threads)
    n0, n1 = share_range(t, threads, x.shape[0])
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    _, Cg, KH, KW = weight.shape
    OH, OW = out.shape[2], out.shape[3]
    Hp = planes.shape[1]
    groups = cols.shape[0]
    P = OH * OW
    # Every element of the planes is written once: padding rows and columns as zeros.
    for n in range(n0, n1):
        for yp in range(Hp):
            row = planes[n, yp]
            y = yp - ph
            if y < 0 or y >= H:
                row[:] = 0.0
                continue
            row[: pw * C] = 0.0
            row[(pw + W) * C :] = 0.0
            inner = row[pw * C : (pw + W) * C].reshape(W, C)
            for c in range(C):
                src = x[n, c, y]
                for i in range(W):
                    inner[i, c] = src[i]
    run, runs = _runs(groups, dw, KW, Cg)
    for r in range(n0 * OH, n1 * OH):
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
                            dd, ss = d[t0 : t0 + run], src[base : base + run]
                            for i in range(run):
                                dd[i] = ss[i]
    for g in range(groups if n1 > n0 else 0):
        microkernel.gemm(cols[g, n0 * P : n1 * P], wr[g], product[n0 * P : n1 * P], 0.0)
        for n in range(n0, n1):
            _write_sample(product.T, bias, g, n, OW, out)


@kernel_driver
def conv2d_positions_forward(
    x, weight, bias, sh, sw, ph, pw, dh, dw, threads, planes, cols, product, out
):
    """out = conv(x, weight) + bias; fills ``cols`` (groups, N*OH*OW, Cg*KH*KW) for backward.
    ``planes`` (N, Hp, Wp*C) receives the zero-padded channels-last input; ``product``
    (N*OH*OW, O / groups) is scratch for one group's GEMM. The samples are shared out over
    ``threads`` threads in contiguous blocks (``run_shares``): each pads, copies the columns
    of, and runs the GEMM rows of its own samples (single-threaded BLAS), so that its columns
    are still in its core's cache when its GEMM reads them.

    x (N, C, H, W), weight (O, Cg, KH, KW), bias (O,), out (N, O, OH, OW); groups = C // Cg.
    """
    wr = _weight_by_tap(weight, cols.shape[0])
    run_shares(
        _positions_forward_share,
        threads,
        x,
        weight,
        wr,
        bias,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        planes,
        cols,
        product,
        out,
    )


@driven_kernel
def _positions_backward_share(
    t,
    threads,
    grad,
    weight,
    wr_t,
    cols,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    need_dx,
    need_dweight,
    g2,
    dcols,
    planes,
    dw_parts,
    bias_parts,
    dx,
):
    """conv2d_positions_backward for share t of ``threads``, samples n0 .. n1: their rows of
    g2, their sums of grad per channel into ``bias_parts[t]`` (O,), their share of the weight
    gradient into ``dw_parts[t]`` (groups, taps, O / groups) if need_dweight, and if need_dx
    their rows of the column gradients and their dx. ``wr_t`` is the weight by tap
    (``_weight_by_tap``) transposed, (groups, O / groups, taps), C-contiguous."""
    if t < 0:
        return each_share(threads)
    n0, n1 = share_range(t, threads, grad.shape[0])
    dw_part, bias_part = dw_parts[t], bias_parts[t]
    O, OH, OW = grad.shape[1], grad.shape[2], grad.shape[3]
    _, Cg, KH, KW = weight.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    groups = cols.shape[0]
    P = OH * OW
    Og = O // groups
    # grad in the layout of the forward product, one (N * P, Og) matrix per group.
    bias_part[:] = 0.0
    for n in range(n0, n1):
        for o in range(O):
            g, ol = o // Og, o % Og
            total = 0.0
            for oy in range(OH):
                src, d = grad[n, o, oy], g2[g, n * P + oy * OW : n * P + (oy + 1) * OW, ol]
                for ox in range(OW):
                    d[ox] = src[ox]
                    total += src[ox]
            bias_part[o] += total
    if n1 == n0:
        dw_part[:] = 0.0
        return
    # dweight as (taps, Og) per group = cols^T x grad: OpenBLAS ran this orientation in 313 us,
    # its transpose grad^T x cols in 474 (the shapes of the module docstring).
    for g in range(groups):
        if need_dweight:
            microkernel.gemm(cols[g, n0 * P : n1 * P].T, g2[g, n0 * P : n1 * P], dw_part[g], 0.0)
        if need_dx:
            microkernel.gemm(g2[g, n0 * P : n1 * P], wr_t[g], dcols[g, n0 * P : n1 * P], 0.0)
    if not need_dx:
        return
    run, runs = _runs(groups, dw, KW, Cg)
    # Windows of one sample overlap in its plane: a sample's plane is one thread's.
    for n in range(n0, n1):
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
                                dd, ss = dst[base : base + run], s[t0 : t0 + run]
                                for i in range(run):
                                    dd[i] += ss[i]
        for y in range(H):
            inner = plane[y + ph, pw * C : (pw + W) * C].reshape(W, C)
            for c in range(C):
                d = dx[n, c, y]
                for i in range(W):
                    d[i] = inner[i, c]


@kernel_driver
def conv2d_positions_backward(
    grad,
    weight,
    cols,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    threads,
    need_dx,
    need_dweight,
    g2,
    dcols,
    planes,
    dweight,
    dbias,
    dx,
):
    """dweight = cols^T x grad (if need_dweight), dbias = grad summed over N and positions, and
    (if need_dx) dx = col2im(grad x weight). ``cols`` is what conv2d_positions_forward filled
    (without need_dweight only its shape is read). The samples are shared out over ``threads``
    threads as in the forward; each sums its own part of dweight and dbias, added up at the
    end. Scratch: ``g2`` (groups, N*OH*OW, O / groups), and for dx ``dcols`` shaped as
    ``cols`` and ``planes`` as in the forward, which the column gradients are added into before
    the padding is cropped."""
    O = grad.shape[1]
    groups, _, taps = cols.shape
    Og = O // groups
    # by tap, transposed: (groups, O / groups, taps), whose rows the micro-kernel reads
    wr_t = np.ascontiguousarray(_weight_by_tap(weight, groups).transpose(0, 2, 1))
    dw_parts = np.empty((threads, groups, taps, Og), dtype=dweight.dtype)
    bias_parts = np.empty((threads, O))
    run_shares(
        _positions_backward_share,
        threads,
        grad,
        weight,
        wr_t,
        cols,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        need_dx,
        need_dweight,
        g2,
        dcols,
        planes,
        dw_parts,
        bias_parts,
        dx,
    )
    dbias[:] = bias_parts.sum(axis=0)
    if need_dweight:
        # taps ordered (ky, kx, channel of the group), as the columns
        _, Cg, KH, KW = dweight.shape
        by_tap = dw_parts.sum(axis=0).reshape(groups, KH, KW, Cg, Og)
        dweight[...] = by_tap.transpose(0, 4, 3, 1, 2).reshape(dweight.shape)


@kernel_driver
def conv2d_pointwise_forward(x, weight, bias, threads, out):
    """out[n] = weight x x[n] + bias per group: a 1x1 convolution, stride 1, no padding. The
    samples are shared out over ``threads`` threads (``run_shares``), each running its own
    products.

    x (N, C, P), weight (Co, Cg), bias (Co,), out (N, Co, P), with P = H * W; groups = C // Cg.
    """
    run_shares(_pointwise_forward_share, threads, x, weight, bias, out)


@driven_kernel
def _pointwise_forward_share(t, threads, x, weight, bias, out):
    """conv2d_pointwise_forward for samples t, t + threads, ..."""
    if t < 0:
        return each_share(threads)
    N, C, P = x.shape
    Co, Cg = weight.shape
    groups = C // Cg
    Og = Co // groups
    for n in range(t, N, threads):
        for g in range(groups):
            dst = out[n, g * Og : (g + 1) * Og]
            # The bias first and the product added (beta = 1): BLAS would otherwise spend a
            # pass zeroing ``dst`` and the bias another.
            for o in range(Og):
                dst[o] = bias[g * Og + o]
            microkernel.gemm(weight[g * Og : (g + 1) * Og], x[n, g * Cg : (g + 1) * Cg], dst, 1.0)


@kernel_driver
def conv2d_pointwise_backward(grad, x, weight, need_dx, need_dweight, threads, dweight, dbias, dx):
    """dweight = sum over n of grad[n] x x[n]^T (if need_dweight; x is otherwise only read for
    its channel count), dbias = grad summed over N and positions, and (if need_dx)
    dx[n] = weight^T x grad[n], per group; the samples shared out over ``threads`` threads
    (``run_shares``), each summing its own part of dweight, added up at the end. Shapes as
    conv2d_pointwise_forward's; grad (N, Co, P)."""
    Co, Cg = weight.shape
    parts = np.empty((threads if need_dweight else 0, Co, Cg), dtype=dweight.dtype)
    run_shares(
        _pointwise_backward_share, threads, grad, x, weight, need_dx, need_dweight, parts, dbias, dx
    )
    if need_dweight:
        dweight[...] = parts.sum(axis=0)


@driven_kernel
def _pointwise_backward_share(t, threads, grad, x, weight, need_dx, need_dweight, parts, dbias, dx):
    """conv2d_pointwise_backward for samples t, t + threads, ... (its part of dweight into
    ``parts[t]``), and dbias for its block of the output channels."""
    if t < 0:
        return each_share(threads)
    N, Co, P = grad.shape
    _, Cg = weight.shape
    groups = x.shape[1] // Cg
    Og = Co // groups
    o0, o1 = share_range(t, threads, Co)
    for o in range(o0, o1):
        s = 0.0
        for n in range(N):
            row = grad[n, o]
            for p in range(P):
                s += row[p]
        dbias[o] = s
    if need_dweight:
        parts[t] = 0.0
    for n in range(t, N, threads):
        for g in range(groups):
            gn = grad[n, g * Og : (g + 1) * Og]
            if need_dweight:
                gemm_views(gn, x[n, g * Cg : (g + 1) * Cg].T, parts[t, g * Og : (g + 1) * Og], 1.0)
            if need_dx:
                microkernel.gemm(
                    weight[g * Og : (g + 1) * Og].T, gn, dx[n, g * Cg : (g + 1) * Cg], 0.0
                )


@memory_bound
def add_channel_bias(out, bias):
    """out (N, C, P) += bias[c] on each channel's plane (a transposed convolution's bias, which
    the conv backward kernels that compute it do not add)."""
    N, C, P = out.shape
    for nc in prange(N * C):
        b, row = bias[nc % C], out[nc // C, nc % C]
        for p in range(P):
            row[p] += b


@memory_bound
def channel_sums(grad, out):
    """out[c] = grad (N, C, P) summed over N and P: a transposed convolution's bias gradient."""
    N, C, P = grad.shape
    for c in prange(C):
        s = 0.0
        for n in range(N):
            row = grad[n, c]
            for p in range(P):
                s += row[p]
        out[c] = s


@inline_helper
def _tap_source(c, ky, kx, C, dh, dw, qh, qw, Wq):
    """(plane, offset) where tap (ky, kx) of channel c begins in a sample's padded planes,
    which are split into their qh * qw stride phases (``_pad_samples``): the tap's element for
    output position (oy, ox) is at offset + oy * Wq + ox there, for any stride when split
    (qh, qw = the stride), at stride 1 when not (qh = qw = 1)."""
    y, x = ky * dh, kx * dw
    return ((y % qh) * qw + x % qw) * C + c, (y // qh) * Wq + x // qw


@called_helper
def _pad_samples(x, n0, s, ph, pw, qh, qw, Wq, planes):
    """Samples n0 .. n0 + s of x (N, C, H, W) zero-padded into ``planes`` (>= s, qh*qw*C, >=
    Hq * Wq), split into stride phases: padded element (y, x) of channel c is element
    (y // qh) * Wq + x // qw of plane ((y % qh) * qw + x % qw) * C + c, so that at strides (qh,
    qw) every tap reads a contiguous run of one plane (``_tap_source``); qw is 1 or 2 (the op
    splits no wider strides: a loop for any qw compiled into every tiled kernel for strides
    that no measured shape has). Unsplit when qh = qw = 1, Wq then the padded width."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for j in range(s):
        for c in range(C):
            src = x[n0 + j, c]
            for phase in range(qh * qw):
                planes[j, phase * C + c] = 0.0
            for y0 in range(qh):  # the input rows y0, y0 + qh, ... land in one phase
                py = (y0 + ph) % qh
                px, first = pw % qw, pw // qw  # where the row's first column lands
                dst = planes[j, (py * qw + px) * C + c]
                # At stride 2 one loop of constant stride writes the even columns into dst and
                # the odd ones into ``odd``, which LLVM vectorizes: a loop per phase, of
                # stride qw, measured slower.
                odd = planes[j, (py * qw + (px + 1) % qw) * C + c]
                # the rows' offsets by addition: a division per row took longer than the
                # row's copy
                base = (y0 + ph) // qh * Wq + first - Wq
                for y in range(y0, H, qh):
                    base, r = base + Wq, src[y]
                    if qw == 1:
                        d = dst[base : base + W]
                        for i in range(W):
                            d[i] = r[i]
                    else:  # qw == 2
                        d0, d1 = dst[base:], odd[base + (1 + pw) // 2 - first :]
                        for k in range(W // 2):
                            d0[k] = r[2 * k]
                            d1[k] = r[2 * k + 1]
                        # an odd width's last column: a loop, as an ``if`` with one store
                        # kept LLVM from vectorizing the loop above
                        for k in range(W // 2, (W + 1) // 2):
                            d0[k] = r[2 * k]


@called_helper
def _tile_columns(planes, s, start, KH, KW, dh, dw, qh, qw, Wq, wide, idx, cols):
    """The columns of a tile, taps-major: ``cols`` (C*KH*KW, s*R*Q), one row per tap (channel,
    ky, kx), for R output rows of each of s padded samples whose windows begin ``start``
    elements into their planes (the first row's offset). Wide (Q = Wq, the planes split into
    the stride's phases): a tap's columns for one sample are one contiguous run of a plane;
    exact (Q = OW, unsplit planes, any stride): gathered through ``idx``, the windows' offsets
    from the first row's."""
    C = planes.shape[1] // (qh * qw)
    P = cols.shape[1] // s
    for r in range(C * KH * KW):
        c, ky, kx = r // (KH * KW), (r // KW) % KH, r % KW
        plane, offset = _tap_source(c, ky, kx, C, dh, dw, qh, qw, Wq)
        offset += start
        row = cols[r]
        for j in range(s):
            d = row[j * P : (j + 1) * P]
            if wide:
                src = planes[j, plane, offset : offset + P]
                for q in range(P):
                    d[q] = src[q]
            else:
                src = planes[j, plane, offset:]
                for q in range(P):
                    d[q] = src[idx[q]]


@called_helper
def _tile_output(product, bias, n0, s, oy0, Q, out):
    """A tile's product (O, s*R*Q) into output rows oy0 .. oy0 + R of samples n0 .. n0 + s of
    ``out``, plus the bias."""
    O, OW = out.shape[1], out.shape[3]
    R = product.shape[1] // (s * Q)
    for j in range(s):
        for o in range(O):
            b, dst = bias[o], out[n0 + j, o]
            for oy in range(R):
                d, src = dst[oy0 + oy], product[o, (j * R + oy) * Q : (j * R + oy) * Q + OW]
                for ox in range(OW):
                    d[ox] = src[ox] + b


@called_helper
def _tile_grad(grad, n0, s, oy0, Q, g2):
    """Output rows oy0 .. oy0 + R of samples n0 .. n0 + s of ``grad`` in the layout of a tile's
    product, (O, s*R*Q), with zeros in the wide layout's extra columns (whose gradient lands in
    the planes' padding)."""
    O, OW = grad.shape[1], grad.shape[3]
    P = g2.shape[1] // s
    R = P // Q
    for j in range(s):
        for o in range(O):
            for oy in range(R):
                d, src = g2[o, j * P + oy * Q : j * P + (oy + 1) * Q], grad[n0 + j, o, oy0 + oy]
                for ox in range(OW):
                    d[ox] = src[ox]
                d[OW:] = 0.0


@called_helper
def _tile_column_grads_add(dcols, s, start, KH, KW, dh, dw, qh, qw, Wq, wide, idx, planes):
    """col2im of a tile: the column gradients ``dcols`` (C*KH*KW, s*R*Q) added into the padded
    planes of its s samples (split as ``_tile_columns``'), the windows beginning ``start``
    elements in."""
    C = planes.shape[1] // (qh * qw)
    P = dcols.shape[1] // s
    for j in range(s):
        for c in range(C):
            for r in range(c * KH * KW, (c + 1) * KH * KW):
                ky, kx = (r // KW) % KH, r % KW
                plane, offset = _tap_source(c, ky, kx, C, dh, dw, qh, qw, Wq)
                offset += start
                dst = planes[j, plane]
                src = dcols[r, j * P : (j + 1) * P]
                if wide:
                    d = dst[offset : offset + P]
                    for q in range(P):
                        d[q] += src[q]
                else:
                    d = dst[offset:]
                    for q in range(P):
                        d[idx[q]] += src[q]


@called_helper
def _crop_samples(planes, s, ph, pw, qh, qw, Wq, n0, dx):
    """The insides of s padded planes (s, qh*qw*C, >= Hq * Wq), split into stride phases as
    ``_pad_samples`` writes them, as samples n0 .. n0 + s of ``dx``; its loops as there."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for j in range(s):
        for c in range(C):
            out = dx[n0 + j, c]
            for y0 in range(qh):
                py = (y0 + ph) % qh
                px, first = pw % qw, pw // qw
                src = planes[j, (py * qw + px) * C + c]
                odd = planes[j, (py * qw + (px + 1) % qw) * C + c]
                base = (y0 + ph) // qh * Wq + first - Wq
                for y in range(y0, H, qh):
                    base, d = base + Wq, out[y]
                    if qw == 1:
                        r = src[base : base + W]
                        for i in range(W):
                            d[i] = r[i]
                    else:  # qw == 2
                        s0, s1 = src[base:], odd[base + (1 + pw) // 2 - first :]
                        for k in range(W // 2):
                            d[2 * k] = s0[k]
                            d[2 * k + 1] = s1[k]
                        for k in range(W // 2, (W + 1) // 2):
                            d[2 * k] = s0[k]


@called_helper
def _grouped_products(w2, cols, OW, Q, product):
    """product = weight x cols per group: w2 (groups, Og, taps), cols (groups*taps, L), L in
    rows of Q columns of which the first OW are the output's (``_tile_output`` reads no
    others, so the product may skip them: ``microkernel.gemm_rows``)."""
    groups, Og, taps = w2.shape
    for g in range(groups):
        microkernel.gemm_rows(
            w2[g], cols[g * taps : (g + 1) * taps], product[g * Og : (g + 1) * Og], 0.0, OW, Q
        )


@inline_helper
def _weight_taps_first(weight):
    """weight (O, Cg, KH, KW) as (KH*KW, O, Cg): each tap's (O, Cg) matrix contiguous."""
    O, Cg, KH, KW = weight.shape
    wt = np.empty((KH * KW, O, Cg), dtype=weight.dtype)
    for o in range(O):
        for c in range(Cg):
            for t in range(KH * KW):
                wt[t, o, c] = weight[o, c, t // KW, t % KW]
    return wt


@called_helper
def _shifted_products(wt, plane, start, KW, dh, dw, qh, qw, Wq, OW, product):
    """product (O, L) = weight x the wide columns of one padded sample, without the columns:
    a wide tap's row is a contiguous run of one of its channel's phase planes, the same phase
    for every channel, so the rows of one tap for all Cg channels of a group are a matrix of
    row stride ``plane.shape[1]``, and the product is the sum over the KH*KW taps of (O, Cg) x
    (Cg, L) products on shifted views of ``plane`` (qh*qw*C, Hq*Wq + tail, ``_pad_samples``),
    the windows beginning ``start`` elements in. ``wt`` is ``_weight_taps_first``'s. Only the
    first OW of every Wq columns are the output's, and only those are computed where the
    micro-kernel runs (``microkernel.gemm_rows``)."""
    taps, O, Cg = wt.shape
    C = plane.shape[0] // (qh * qw)
    groups = C // Cg
    Og, L = O // groups, product.shape[1]
    for g in range(groups):
        for t in range(taps):
            first, offset = _tap_source(g * Cg, t // KW, t % KW, C, dh, dw, qh, qw, Wq)
            offset += start
            microkernel.gemm_rows(
                wt[t, g * Og : (g + 1) * Og],
                plane[first : first + Cg, offset : offset + L],
                product[g * Og : (g + 1) * Og],
                0.0 if t == 0 else 1.0,
                OW,
                Wq,
            )


@called_helper
def _add_weight_grad(g2, cols, acc):
    """acc (taps, O) += (g2 x cols^T)^T per group, group g's out-channels in its columns: g2
    (O, L), cols (groups*taps, L). BLAS computes cols x g2^T: OpenBLAS ran it at 82-96% of the
    sgemm peak where g2 x cols^T ran at 77-87% ((576 x 272..1088) x (272..1088 x 64) and 288
    taps, float32, one thread). BLAS adds the product into ``acc`` itself (beta = 1)."""
    taps, O = acc.shape
    groups = cols.shape[0] // taps
    Og = O // groups
    for g in range(groups):
        gs = slice(g * Og, (g + 1) * Og)
        gemm_views(cols[g * taps : (g + 1) * taps], g2[gs].T, acc[:, gs], 1.0)


@called_helper
def _grouped_column_grads(w2, g2, dcols):
    """dcols = weight^T x g2 per group: w2 (groups, Og, taps), g2 (O, L)."""
    groups, Og, taps = w2.shape
    for g in range(groups):
        microkernel.gemm(w2[g].T, g2[g * Og : (g + 1) * Og], dcols[g * taps : (g + 1) * taps], 0.0)


@called_helper
def _shifted_column_grads_add(wt, g2, start, KW, dh, dw, qh, qw, Wq, OW, dplane):
    """col2im of weight^T x g2 without the column gradients: each tap's (Cg, Og) x (Og, L)
    product added straight into the shifted view of the padded planes ``dplane`` that
    ``_shifted_products`` reads for that tap (BLAS's beta = 1, one product after another, so
    the taps' overlapping views add up). g2's columns past OW of every Wq are zeros, whose
    products the micro-kernel skips (``microkernel.gemm_rows``)."""
    taps, O, Cg = wt.shape
    C = dplane.shape[0] // (qh * qw)
    groups = C // Cg
    Og, L = O // groups, g2.shape[1]
    for g in range(groups):
        for t in range(taps):
            first, offset = _tap_source(g * Cg, t // KW, t % KW, C, dh, dw, qh, qw, Wq)
            offset += start
            microkernel.gemm_rows(
                wt[t, g * Og : (g + 1) * Og].T,
                g2[g * Og : (g + 1) * Og],
                dplane[first : first + Cg, offset : offset + L],
                1.0,
                OW,
                Wq,
            )


@called_helper
def _transposed(g2, g2t):
    """g2t (L, O) = g2 (O, L) transposed, a row of g2t at a time: at a tile's (64, 288),
    faster than in blocks of 16 x 16 (docs/performance.md, "Convolution, session 34")."""
    O, L = g2.shape
    for p in range(L):
        d = g2t[p]
        for o in range(O):
            d[o] = g2[o, p]


@called_helper
def _shifted_weight_grad_add(g2t, plane, start, KH, KW, dh, dw, qh, qw, Wq, acc):
    """acc (Cg*KH*KW, O) += the weight gradient of one wide tile, transposed, without the
    columns: for each tap, the (Cg, L) shifted view of ``plane`` that ``_shifted_products``
    reads times g2t (L, O), grad in the product's layout transposed (its wide padding columns
    zeros), into the tap's rows of ``acc``, those of channel c at c * KH * KW + tap. Both
    operands of each product have contiguous rows along the inner dimension's other side, as
    the micro-kernel needs (``microkernel.gemm``); the columns' copy is left out."""
    L, O = g2t.shape
    Cg = acc.shape[0] // (KH * KW)
    C = plane.shape[0] // (qh * qw)
    groups = C // Cg
    Og = O // groups
    for g in range(groups):
        for t in range(KH * KW):
            first, offset = _tap_source(g * Cg, t // KW, t % KW, C, dh, dw, qh, qw, Wq)
            offset += start
            microkernel.gemm(
                plane[first : first + Cg, offset : offset + L],
                g2t[:, g * Og : (g + 1) * Og],
                acc[t :: KH * KW, g * Og : (g + 1) * Og],
                1.0,
            )


@inline_helper
def _tile_view(scratch, rows, columns):
    """The first rows * columns elements of one thread's (contiguous) scratch as a matrix."""
    return scratch.ravel()[: rows * columns].reshape(rows, columns)


@inline_helper
def _tile_geometry(out_shape, weight_shape, C, sh, sw, Wq, wide):
    """The tiled kernels' sizes: wide tiles have their planes split into the stride's phases
    (qh, qw) and Q = Wq columns per output row, exact ones unsplit planes and Q = OW."""
    N, O, OH, OW = out_shape
    Cg, KH, KW = weight_shape[1], weight_shape[2], weight_shape[3]
    groups = C // Cg
    qh, qw, Q = (sh, sw, Wq) if wide else (1, 1, OW)
    return N, O, OH, OW, Cg, KH, KW, C, groups, O // groups, Cg * KH * KW, qh, qw, Q


@kernel_driver
def conv2d_tiles_forward(
    x, weight, bias, sh, sw, ph, pw, dh, dw, Wq, wide, rows, shifted, planes, cols, product, out
):
    """out = conv(x, weight) + bias, a tile at a time per thread: S samples padded into the
    thread's planes, then for each block of ``rows`` output rows of them (all OH rows when S >
    1) im2col into the thread's columns (in cache), one GEMM per group, write out; or, when
    ``shifted`` (wide columns and S = 1), no columns: products on shifted views of the planes
    (``_shifted_products``). Nothing is saved: backward recomputes the columns. Scratch per
    thread t: ``planes[t]`` (S, C, Hp*Wp) for exact columns, or for wide ones (S, sh*sw*C,
    Hq*Wq + tail), the padded planes split into the stride's phases of Hq x Wq (Wq = Wp at
    stride 1; see ``_pad_samples``); ``cols[t]`` (C*KH*KW, S*rows*Q; unused when shifted) and
    ``product[t]`` (O, S*rows*Q), Q as in ``_tile_columns``. ``Wq`` is the planes' row width.
    The threads are ``run_shares``' shares, one per thread's scratch."""
    run_shares(
        _tiles_forward_share,
        planes.shape[0],
        x,
        weight,
        bias,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        Wq,
        wide,
        rows,
        shifted,
        planes,
        cols,
        product,
        out,
    )


@driven_kernel
def _tiles_forward_share(
    t,
    threads,
    x,
    weight,
    bias,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    Wq,
    wide,
    rows,
    shifted,
    planes,
    cols,
    product,
    out,
):
    """conv2d_tiles_forward's tiles t, t + threads, ... on thread t's scratch."""
    if t < 0:
        return each_share(threads)
    N, O, OH, OW, Cg, KH, KW, C, groups, Og, taps, qh, qw, Q = _tile_geometry(
        out.shape, weight.shape, x.shape[1], sh, sw, Wq, wide
    )
    S = planes.shape[1]
    tiles = (N + S - 1) // S
    idx = _window_offsets(rows, OW, sh, sw, Wq)
    w2 = weight.reshape(groups, Og, taps)
    # taps first only for the shifted products, the one reader of it
    wt = _weight_taps_first(weight) if shifted else np.empty((0, 0, 0), weight.dtype)
    for tile in range(t, tiles, threads):
        n0 = tile * S
        s = min(S, N - n0)
        _pad_samples(x, n0, s, ph, pw, qh, qw, Wq, planes[t])
        for oy0 in range(0, OH, rows):
            L = s * min(rows, OH - oy0) * Q
            start = oy0 * (sh // qh) * Wq
            pt = _tile_view(product[t], O, L)
            if shifted:
                _shifted_products(wt, planes[t, 0], start, KW, dh, dw, qh, qw, Wq, OW, pt)
            else:
                ct = _tile_view(cols[t], C * KH * KW, L)
                _tile_columns(planes[t], s, start, KH, KW, dh, dw, qh, qw, Wq, wide, idx, ct)
                _grouped_products(w2, ct, OW, Q, pt)
            _tile_output(pt, bias, n0, s, oy0, Q, out)


@kernel_driver
def conv2d_tiles_backward(
    grad,
    x,
    weight,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    Wq,
    wide,
    rows,
    shifted,
    need_dx,
    planes,
    cols,
    g2,
    g2t,
    dcols,
    dplanes,
    dw_tiles,
    dweight,
    dbias,
    dx,
):
    """dweight = sum over tiles of grad x cols^T, dbias, and (if need_dx) dx = col2im(weight^T
    x grad), per tile and block of output rows as in the forward, the columns recomputed from
    x (when ``shifted``, as the forward's, the input gradient's products add straight into the
    shifted planes: ``_shifted_column_grads_add``). A thread owns whole samples, so the
    blocks' overlapping input gradients add up in its ``dplanes`` without a race. Scratch per
    thread t: ``planes[t]``, ``cols[t]`` as in the forward, ``g2[t]`` (O, S*rows*Q) (grad in
    the product's layout), ``dcols[t]`` as ``cols[t]`` (or empty without need_dx or when
    shifted) and ``dplanes[t]`` as ``planes[t]`` (or empty without need_dx), and
    ``dw_tiles[t]`` (C/groups*KH*KW, O), the thread's sum of the weight gradient, transposed,
    added up at the end. The threads are ``run_shares``' shares, as the forward's.
    """
    run_shares(
        _tiles_backward_share,
        planes.shape[0],
        grad,
        x,
        weight,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        Wq,
        wide,
        rows,
        shifted,
        need_dx,
        planes,
        cols,
        g2,
        g2t,
        dcols,
        dplanes,
        dw_tiles,
        dbias,
        dx,
    )
    dweight[...] = dw_tiles.sum(axis=0).T.reshape(dweight.shape)


@driven_kernel
def _tiles_backward_share(
    t,
    threads,
    grad,
    x,
    weight,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    Wq,
    wide,
    rows,
    shifted,
    need_dx,
    planes,
    cols,
    g2,
    g2t,
    dcols,
    dplanes,
    dw_tiles,
    dbias,
    dx,
):
    """conv2d_tiles_backward's tiles t, t + threads, ... on thread t's scratch, and dbias for
    its share of the output channels."""
    if t < 0:
        return each_share(threads)
    N, O, OH, OW, Cg, KH, KW, C, groups, Og, taps, qh, qw, Q = _tile_geometry(
        grad.shape, weight.shape, x.shape[1], sh, sw, Wq, wide
    )
    S = planes.shape[1]
    tiles = (N + S - 1) // S
    o0, o1 = share_range(t, threads, O)
    for o in range(o0, o1):
        total = 0.0
        for n in range(N):
            for oy in range(OH):
                r = grad[n, o, oy]
                for ox in range(OW):
                    total += r[ox]
        dbias[o] = total
    idx = _window_offsets(rows, OW, sh, sw, Wq)
    w2 = weight.reshape(groups, Og, taps)
    # taps first only for the shifted products, the one reader of it
    wt = _weight_taps_first(weight) if shifted else np.empty((0, 0, 0), weight.dtype)
    dw_tiles[t] = 0.0
    for tile in range(t, tiles, threads):
        n0 = tile * S
        s = min(S, N - n0)
        _pad_samples(x, n0, s, ph, pw, qh, qw, Wq, planes[t])
        if need_dx:
            dplanes[t] = 0.0
        for oy0 in range(0, OH, rows):
            L = s * min(rows, OH - oy0) * Q
            start = oy0 * (sh // qh) * Wq
            gt = _tile_view(g2[t], O, L)
            _tile_grad(grad, n0, s, oy0, Q, gt)
            if shifted:
                g2t_t = _tile_view(g2t[t], L, O)
                _transposed(gt, g2t_t)
                _shifted_weight_grad_add(
                    g2t_t, planes[t, 0], start, KH, KW, dh, dw, qh, qw, Wq, dw_tiles[t]
                )
            else:
                ct = _tile_view(cols[t], C * KH * KW, L)
                _tile_columns(planes[t], s, start, KH, KW, dh, dw, qh, qw, Wq, wide, idx, ct)
                _add_weight_grad(gt, ct, dw_tiles[t])
            if need_dx and shifted:
                _shifted_column_grads_add(wt, gt, start, KW, dh, dw, qh, qw, Wq, OW, dplanes[t, 0])
            elif need_dx:
                dct = _tile_view(dcols[t], C * KH * KW, L)
                _grouped_column_grads(w2, gt, dct)
                _tile_column_grads_add(
                    dct, s, start, KH, KW, dh, dw, qh, qw, Wq, wide, idx, dplanes[t]
                )
        if need_dx:
            _crop_samples(dplanes[t], s, ph, pw, qh, qw, Wq, n0, dx)
