"""Scaled dot-product attention: a tiled, flash-style forward and backward.

Per (batch x head) slice, queries are taken ``block_q`` rows at a time against keys ``block_k``
columns at a time. The forward keeps a running row maximum and sum of exponentials and saves
only the log-sum-exp per query row; the backward recomputes each tile of probabilities from it.
No (Tq, Tk) matrix is ever held: the extra memory is the output, the log-sum-exp and one
worker's tiles per thread, all passed in by the op (the kernels allocate nothing).

q, k, v, the output and the gradients are 4-D (batch, heads, rows, head size) arrays of any
strides: the op hands over C-contiguous arrays, or views of a (batch, rows, heads, head size)
layout (``packed_self_attention``: q, k and v side by side in one projection's output, and
the output in the layout the next projection reads), so that no transposed copy is made on
either side. The kernels copy each slice's keys and values, and each query tile, into
contiguous per-worker scratch (BLAS reads strided rows only through a copy in Numba), and write
each output tile, and each slice's key and value gradients, from contiguous scratch.

Each tile's products are GEMMs through BLAS (``np.dot``), sized by the op so that OpenBLAS runs
each on one thread (firefly.kernels.linalg.SINGLE_THREAD_GEMM): the threads are the workers of
the ``prange`` over slices, each slice on one worker, so no two threads write one gradient.

Masks arrive as 3-D arrays (slices, rows, columns) whose every dimension is 1 (broadcast) or
full, with the slice index found from the batch shape and per-dimension strides (0 where the
mask broadcasts): ``bias`` is added to the scaled scores, ``keep`` (bool) masks where False.
Rows with no key left are defined as torch defines them: output 0, gradients 0 (their
log-sum-exp is stored as +inf, so that the backward's probabilities come out 0).

Dropout multiplies each kept probability by 1 / (1 - p) after the softmax, as torch's; whether
(slice, row, column) is kept comes from a counter-based hash of a 64-bit key (drawn by the op
from firefly's generator), so the backward regenerates the mask instead of storing it.
"""

import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import called_helper, inline_helper, scalar, sized_kernel

# Below this many query elements (slices x rows x head size) a call runs serially: waking the
# thread pool costs more than the slices save.
PARALLEL_MIN_ATTENTION = 32768
# Independent partial sums (and maxima) a row is dealt across: without fastmath LLVM keeps one
# running sum in order; independent lanes vectorize.
LANES = 16

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0


def dropout_uniform(key, counter):
    """A uniform draw in [0, 1) for element ``counter`` of the stream ``key`` (both uint64):
    SplitMix64's output function of ``key + counter * golden ratio``. Written with NumPy
    uint64 scalars only, so the same function runs compiled in the kernels (one element) and
    on NumPy uint64 arrays (a whole mask, for the differentiable backward and for tests)."""
    x = key + counter * _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    x = x ^ (x >> np.uint64(31))
    return np.float64(x >> np.uint64(11)) * _TWO_POW_MINUS_53


_dropout_uniform = scalar(dropout_uniform)


@inline_helper
def _slice_offset(n, batch_shape, strides):
    """The mask slice that broadcasts to slice ``n`` of the batch: ``n`` unravelled over
    ``batch_shape`` (C order), dotted with the mask's ``strides`` (0 where it broadcasts)."""
    offset = 0
    for d in range(len(batch_shape) - 1, -1, -1):
        size = batch_shape[d]
        offset += (n % size) * strides[d]
        n //= size
    return offset


@inline_helper
def _scores(srow, limit, scale, has_bias, brow, has_keep, krow):
    """Scale the first ``limit`` raw scores of a tile row in place, add the bias row and set
    masked columns to -inf. A bias or keep row of one element broadcasts over the columns.
    Each case is its own loop so that every loop vectorizes."""
    if has_bias:
        if brow.size > 1:
            for c in range(limit):
                srow[c] = srow[c] * scale + brow[c]
        else:
            b = brow[0]
            for c in range(limit):
                srow[c] = srow[c] * scale + b
    else:
        for c in range(limit):
            srow[c] = srow[c] * scale
    if has_keep:
        minus_inf = vmath.like(-np.inf, scale)
        if krow.size > 1:
            for c in range(limit):
                srow[c] = srow[c] if krow[c] else minus_inf
        elif not krow[0]:
            srow[:limit] = minus_inf


@called_helper
def _exp_shifted(row, limit, shift):
    """row[:limit] = exp(row[:limit] - shift) in place. A function of its own rather than
    inlined: vmath.exp inlined into the kernels' nested loops tripped Numba's IR scope check
    (NumbaIRAssumptionWarning), and the row loop vectorizes the same either way."""
    for c in range(limit):
        row[c] = vmath.exp(row[c] - shift)


@inline_helper
def _row_max(row, n, lanes):
    """max(row[:n]) (-inf for n = 0), in LANES independent maxima (the first LANES entries
    of ``lanes``) so that the loop vectorizes."""
    for k in range(LANES):
        lanes[k] = -np.inf
    b = 0
    while b + LANES <= n:
        for k in range(LANES):
            lanes[k] = max(lanes[k], row[b + k])
        b += LANES
    top = -np.inf
    for i in range(b, n):
        top = max(top, row[i])
    for k in range(LANES):
        top = max(top, lanes[k])
    return top


@inline_helper
def _row_sum(row, n, lanes):
    """sum(row[:n]), in LANES independent partial sums (the first LANES entries of
    ``lanes``) so that the loop vectorizes."""
    for k in range(LANES):
        lanes[k] = 0.0
    b = 0
    while b + LANES <= n:
        for k in range(LANES):
            lanes[k] += row[b + k]
        b += LANES
    total = 0.0
    for i in range(b, n):
        total += row[i]
    for k in range(LANES):
        total += lanes[k]
    return total


@inline_helper
def _transpose_blocks(x, block, out):
    """x (T, D) into ``out`` as consecutive (D, cols) blocks of ``block`` columns of x^T, so
    that products with x^T are plain (non-transposed) GEMMs, which OpenBLAS runs faster."""
    T, D = x.shape
    for j0 in range(0, T, block):
        cols = min(block, T - j0)
        tile = out[j0 * D : (j0 + cols) * D].reshape((D, cols))
        for c in range(cols):
            row = x[j0 + c]
            for d in range(D):
                tile[d, c] = row[d]


@inline_helper
def _copy_rows(x, out):
    """out[:] = x for a 2-D ``x`` of any strides and a contiguous ``out`` of its shape."""
    for r in range(x.shape[0]):
        row, dest = x[r], out[r]
        for c in range(x.shape[1]):
            dest[c] = row[c]


@inline_helper
def _add_into(target, addend):
    """target += addend for 2-D arrays of one shape, ``target`` of any strides."""
    for r in range(target.shape[0]):
        row, extra = target[r], addend[r]
        for c in range(row.size):
            row[c] += extra[c]


@inline_helper
def _drop_scale(key, counter, p, inv_keep):
    """1 / (1 - p) where the element is kept, 0 where dropped."""
    return inv_keep if _dropout_uniform(key, np.uint64(counter)) >= p else 0.0


@inline_helper
def _row_views(bslice, kslice, i, j0, j1):
    """The bias and keep rows for query row i and key columns j0:j1 (a row of one element
    where the mask broadcasts over the keys)."""
    brow = bslice[i if bslice.shape[0] > 1 else 0]
    krow = kslice[i if kslice.shape[0] > 1 else 0]
    if brow.size > 1:
        brow = brow[j0:j1]
    if krow.size > 1:
        krow = krow[j0:j1]
    return brow, krow


def _attention_forward(
    q,
    k,
    v,
    heads,
    head_offsets,
    batch_shape,
    bias,
    bias_strides,
    has_bias,
    keep,
    keep_strides,
    has_keep,
    causal,
    scale,
    dropout_p,
    dropout_key,
    block_q,
    block_k,
    lse,
    lanes,
    scratch,
    out,
):
    """out = softmax(q k^T * scale + mask) v per slice, with lse the per-row log-sum-exp.

    q (B, *, Tq, E), k (B, *, Tk, E), v (B, *, Tk, Ev), any strides: head h of batch b is
    q[b, head_offsets[0] + h], k[b, head_offsets[1] + h] and v[b, head_offsets[2] + h] (so q,
    k and v may be one array, their heads side by side), h < heads; out (B, heads, Tq, Ev), any
    strides. The slices are numbered n = b * heads + h (lse (B * heads, Tq), the masks' and
    dropout's slice index); scratch (workers, forward_scratch_size(...)) and lanes (workers,
    LANES) in the inputs' dtype."""
    B, Tq, E = q.shape[0], q.shape[2], q.shape[3]
    Tk, Ev = k.shape[2], v.shape[3]
    H = heads
    qh, kh, vh = head_offsets
    N = B * H
    workers = scratch.shape[0]
    dropping = dropout_p > 0.0
    inv_keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
    key = np.uint64(dropout_key[0])
    tile = block_q * block_k
    for w in prange(workers):
        work = scratch[w]
        lane = lanes[w]
        start = tile
        tmp_all = work[start : start + block_q * Ev]
        start += block_q * Ev
        row_max = work[start : start + block_q]
        row_sum = work[start + block_q : start + 2 * block_q]
        alpha = work[start + 2 * block_q : start + 3 * block_q]
        start += 3 * block_q
        q_all = work[start : start + block_q * E]
        start += block_q * E
        acc_all = work[start : start + block_q * Ev]
        start += block_q * Ev
        kt = work[start : start + E * Tk]
        start += E * Tk
        vn = work[start : start + Tk * Ev].reshape((Tk, Ev))
        for n in range(w, N, workers):
            b, h = n // H, n % H
            bslice = bias[_slice_offset(n, batch_shape, bias_strides)]
            kslice = keep[_slice_offset(n, batch_shape, keep_strides)]
            _transpose_blocks(k[b, kh + h], block_k, kt)
            _copy_rows(v[b, vh + h], vn)
            for i0 in range(0, Tq, block_q):
                i1 = min(i0 + block_q, Tq)
                rows = i1 - i0
                q_tile = q_all[: rows * E].reshape((rows, E))
                _copy_rows(q[b, qh + h, i0:i1], q_tile)
                acc = acc_all[: rows * Ev].reshape((rows, Ev))
                j_end = min(Tk, i1) if causal else Tk
                row_max[:rows] = -np.inf
                row_sum[:rows] = 0.0
                for j0 in range(0, j_end, block_k):
                    j1 = min(j0 + block_k, Tk)  # a whole transposed block
                    cols = j1 - j0
                    s = work[: rows * cols].reshape((rows, cols))
                    np.dot(q_tile, kt[j0 * E : j0 * E + E * cols].reshape((E, cols)), s)
                    for r in range(rows):
                        i = i0 + r
                        srow = s[r]
                        limit = max(0, min(cols, i + 1 - j0)) if causal else cols
                        brow, krow = _row_views(bslice, kslice, i, j0, j1)
                        _scores(srow, limit, scale, has_bias, brow, has_keep, krow)
                        new_max = max(row_max[r], _row_max(srow, limit, lane))
                        if new_max == -np.inf:  # nothing attended yet in this row
                            srow[:] = 0.0
                            alpha[r] = 1.0
                            continue
                        alpha[r] = np.exp(row_max[r] - new_max)
                        _exp_shifted(srow, limit, vmath.like(new_max, scale))
                        srow[limit:] = 0.0
                        row_sum[r] = row_sum[r] * alpha[r] + _row_sum(srow, limit, lane)
                        row_max[r] = new_max
                        if dropping:
                            base = (n * Tq + i) * Tk + j0
                            for c in range(limit):
                                srow[c] *= _drop_scale(key, base + c, dropout_p, inv_keep)
                    if j0 == 0:
                        np.dot(s, vn[j0:j1], acc)
                    else:
                        tmp = tmp_all[: rows * Ev].reshape((rows, Ev))
                        np.dot(s, vn[j0:j1], tmp)
                        for r in range(rows):
                            a = alpha[r]
                            for e in range(Ev):
                                acc[r, e] = acc[r, e] * a + tmp[r, e]
                for r in range(rows):
                    total = row_sum[r]
                    dest = out[b, h, i0 + r]
                    if total > 0.0:
                        inv = vmath.like(1.0 / total, scale)
                        for e in range(Ev):
                            dest[e] = acc[r, e] * inv
                        lse[n, i0 + r] = row_max[r] + np.log(total)
                    else:  # a row with every key masked (or no key at all): torch's zeros
                        dest[:] = 0.0
                        lse[n, i0 + r] = np.inf


def forward_scratch_size(block_q, block_k, tk, e, ev):
    """Elements of one worker's scratch in ``attention_forward``."""
    return block_q * (block_k + 2 * ev + e + 3) + (e + ev) * tk


def _attention_backward(
    q,
    k,
    v,
    heads,
    head_offsets,
    batch_shape,
    bias,
    bias_strides,
    has_bias,
    keep,
    keep_strides,
    has_keep,
    causal,
    scale,
    dropout_p,
    dropout_key,
    block_q,
    block_k,
    out,
    lse,
    grad,
    need_dbias,
    dbias_parts,
    scratch,
    dq,
    dk,
    dv,
    dbias,
):
    """Gradients of ``_attention_forward``'s output given its ``grad``: dq, dk, dv (laid out
    as q, k, v, the same head offsets; they may be one array as q, k and v may), out and grad
    (B, heads, Tq, Ev), any strides; and, with ``need_dbias``, dbias (shaped as
    the 3-D bias), summed over the slices it broadcast over through per-worker partial sums
    ``dbias_parts`` (workers, *bias.shape).

    scratch is (workers, backward_scratch_size(...))."""
    B, Tq, E = q.shape[0], q.shape[2], q.shape[3]
    Tk, Ev = k.shape[2], v.shape[3]
    H = heads
    qh, kh, vh = head_offsets
    N = B * H
    workers = scratch.shape[0]
    dropping = dropout_p > 0.0
    inv_keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
    key = np.uint64(dropout_key[0])
    tile = block_q * block_k
    wide = max(E, Ev)
    for w in prange(workers):
        work = scratch[w]
        dp_all = work[tile : 2 * tile]
        start = 2 * tile
        dq_all = work[start : start + block_q * E]
        start += block_q * E
        dq_rows_all = work[start : start + block_q * E]
        start += block_q * E
        q_all = work[start : start + block_q * E]
        start += block_q * E
        g_all = work[start : start + block_q * Ev]
        start += block_q * Ev
        dkv_all = work[start : start + block_k * wide]
        start += block_k * wide
        rowdot = work[start : start + block_q]
        start += block_q
        kt = work[start : start + E * Tk]
        start += E * Tk
        vt = work[start : start + Ev * Tk]
        start += Ev * Tk
        kn = work[start : start + Tk * E].reshape((Tk, E))
        if need_dbias:
            dbias_parts[w] = 0.0
        for n in range(w, N, workers):
            b, h = n // H, n % H
            bslice = bias[_slice_offset(n, batch_shape, bias_strides)]
            kslice = keep[_slice_offset(n, batch_shape, keep_strides)]
            dbslice = dbias_parts[
                w, _slice_offset(n, batch_shape, bias_strides) if need_dbias else 0
            ]
            on, dk_n, dv_n = out[b, h], dk[b, kh + h], dv[b, vh + h]
            # K both ways: transposed blocks for the scores, rows for dq's product (a plain
            # GEMM: BLAS's transposed-operand path is slower, see _transpose_blocks).
            _copy_rows(k[b, kh + h], kn)
            _transpose_blocks(kn, block_k, kt)
            _transpose_blocks(v[b, vh + h], block_k, vt)
            dk_n[:, :] = 0.0
            dv_n[:, :] = 0.0
            for i0 in range(0, Tq, block_q):
                i1 = min(i0 + block_q, Tq)
                rows = i1 - i0
                q_tile = q_all[: rows * E].reshape((rows, E))
                _copy_rows(q[b, qh + h, i0:i1], q_tile)
                g_tile = g_all[: rows * Ev].reshape((rows, Ev))
                _copy_rows(grad[b, h, i0:i1], g_tile)
                for r in range(rows):
                    total = 0.0
                    for e in range(Ev):
                        total += np.float64(g_tile[r, e]) * on[i0 + r, e]
                    rowdot[r] = total
                dq_rows = dq_rows_all[: rows * E].reshape((rows, E))
                j_end = min(Tk, i1) if causal else Tk
                if j_end == 0:
                    dq_rows[:, :] = 0.0
                for j0 in range(0, j_end, block_k):
                    j1 = min(j0 + block_k, Tk)  # a whole transposed block
                    cols = j1 - j0
                    s = work[: rows * cols].reshape((rows, cols))
                    dp = dp_all[: rows * cols].reshape((rows, cols))
                    np.dot(q_tile, kt[j0 * E : j0 * E + E * cols].reshape((E, cols)), s)
                    np.dot(g_tile, vt[j0 * Ev : j0 * Ev + Ev * cols].reshape((Ev, cols)), dp)
                    for r in range(rows):
                        i = i0 + r
                        srow, dprow = s[r], dp[r]
                        limit = max(0, min(cols, i + 1 - j0)) if causal else cols
                        brow, krow = _row_views(bslice, kslice, i, j0, j1)
                        _scores(srow, limit, scale, has_bias, brow, has_keep, krow)
                        shift = lse[n, i]
                        d = vmath.like(rowdot[r], scale)
                        _exp_shifted(srow, limit, shift)
                        if dropping:
                            base = (n * Tq + i) * Tk + j0
                            for c in range(limit):
                                z = _drop_scale(key, base + c, dropout_p, inv_keep)
                                p = srow[c]
                                dprow[c] = p * (dprow[c] * z - d)
                                srow[c] = p * z
                        elif need_dbias:
                            for c in range(limit):
                                dprow[c] = srow[c] * (dprow[c] - d)
                        else:  # scaled here: one pass fewer below
                            sd = d * scale
                            for c in range(limit):
                                dprow[c] = srow[c] * (dprow[c] * scale - sd)
                        srow[limit:] = 0.0
                        dprow[limit:] = 0.0
                        if need_dbias:
                            drow = dbslice[i if dbslice.shape[0] > 1 else 0]
                            if drow.size > 1:
                                for c in range(limit):
                                    drow[j0 + c] += dprow[c]
                            else:
                                for c in range(limit):
                                    drow[0] += dprow[c]
                        if need_dbias or dropping:
                            for c in range(limit):
                                dprow[c] *= scale
                    dkv = dkv_all[: cols * Ev].reshape((cols, Ev))
                    np.dot(s.T, g_tile, dkv)
                    _add_into(dv_n[j0:j1], dkv)
                    if j0 == 0:
                        np.dot(dp, kn[j0:j1], dq_rows)
                    else:
                        dq_tmp = dq_all[: rows * E].reshape((rows, E))
                        np.dot(dp, kn[j0:j1], dq_tmp)
                        _add_into(dq_rows, dq_tmp)
                    dkv = dkv_all[: cols * E].reshape((cols, E))
                    np.dot(dp.T, q_tile, dkv)
                    _add_into(dk_n[j0:j1], dkv)
                _copy_rows(dq_rows, dq[b, qh + h, i0:i1])
    if need_dbias:
        dbias[...] = 0.0
        for w in range(workers):
            dbias += dbias_parts[w]


def backward_scratch_size(block_q, block_k, tk, e, ev):
    """Elements of one worker's scratch in ``attention_backward``."""
    return (
        2 * block_q * block_k
        + block_q * (3 * e + ev + 1)
        + block_k * max(e, ev)
        + (2 * e + ev) * tk
    )


attention_forward = sized_kernel(_attention_forward, PARALLEL_MIN_ATTENTION)
attention_backward = sized_kernel(_attention_backward, PARALLEL_MIN_ATTENTION)
