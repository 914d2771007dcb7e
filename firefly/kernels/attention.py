"""Scaled dot-product attention: a tiled, flash-style forward and backward.

Per (batch x head) slice, queries are taken ``block_q`` rows at a time against keys ``block_k``
columns at a time. The forward keeps a running row maximum and sum of exponentials and saves
only the log-sum-exp per query row; the backward recomputes each tile of probabilities from it.
No (Tq, Tk) matrix is ever held: the extra memory is the output, the log-sum-exp and one
worker's tiles per thread, all passed in by the op (the kernels allocate nothing).

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
from firefly.kernels._jit import inline_helper, scalar, sized_kernel

# Below this many query elements (slices x rows x head size) a call runs serially: waking the
# thread pool costs more than the slices save.
PARALLEL_MIN_ATTENTION = 32768

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
    masked columns to -inf; returns their maximum (-inf when all are masked). A bias or keep
    row of one element broadcasts over the columns."""
    top = -np.inf
    bias_step = 1 if brow.size > 1 else 0
    keep_step = 1 if krow.size > 1 else 0
    for c in range(limit):
        x = srow[c] * scale
        if has_bias:
            x += brow[c * bias_step]
        if has_keep and not krow[c * keep_step]:
            x = -np.inf
        srow[c] = x
        top = max(top, x)
    return top


@inline_helper
def _drop_scale(key, counter, p, inv_keep):
    """1 / (1 - p) where the element is kept, 0 where dropped."""
    return inv_keep if _dropout_uniform(key, np.uint64(counter)) >= p else 0.0


def _attention_forward(
    q,
    k,
    v,
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
    scratch,
    out,
):
    """out = softmax(q k^T * scale + mask) v per slice, with lse the per-row log-sum-exp.

    q (N, Tq, E), k (N, Tk, E), v (N, Tk, Ev), out (N, Tq, Ev), lse (N, Tq); scratch
    (workers, block_q * (block_k + Ev + 3)) in the inputs' dtype."""
    N, Tq, _ = q.shape
    Tk, Ev = k.shape[1], v.shape[2]
    workers = scratch.shape[0]
    dropping = dropout_p > 0.0
    inv_keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
    key = np.uint64(dropout_key[0])
    tile = block_q * block_k
    for w in prange(workers):
        work = scratch[w]
        tmp_all = work[tile : tile + block_q * Ev]
        row_max = work[tile + block_q * Ev : tile + block_q * (Ev + 1)]
        row_sum = work[tile + block_q * (Ev + 1) : tile + block_q * (Ev + 2)]
        alpha = work[tile + block_q * (Ev + 2) : tile + block_q * (Ev + 3)]
        for n in range(w, N, workers):
            bslice = bias[_slice_offset(n, batch_shape, bias_strides)]
            kslice = keep[_slice_offset(n, batch_shape, keep_strides)]
            qn, kn, vn = q[n], k[n], v[n]
            for i0 in range(0, Tq, block_q):
                i1 = min(i0 + block_q, Tq)
                rows = i1 - i0
                acc = out[n, i0:i1]
                j_end = min(Tk, i1) if causal else Tk
                for r in range(rows):
                    row_max[r] = -np.inf
                    row_sum[r] = 0.0
                for j0 in range(0, j_end, block_k):
                    j1 = min(j0 + block_k, j_end)
                    cols = j1 - j0
                    s = work[: rows * cols].reshape((rows, cols))
                    np.dot(qn[i0:i1], kn[j0:j1].T, s)
                    for r in range(rows):
                        i = i0 + r
                        srow = s[r]
                        limit = max(0, min(cols, i + 1 - j0)) if causal else cols
                        brow = bslice[i if bslice.shape[0] > 1 else 0]
                        krow = kslice[i if kslice.shape[0] > 1 else 0]
                        if brow.size > 1:
                            brow = brow[j0:j1]
                        if krow.size > 1:
                            krow = krow[j0:j1]
                        top = _scores(srow, limit, scale, has_bias, brow, has_keep, krow)
                        new_max = max(row_max[r], top)
                        if new_max == -np.inf:  # nothing attended yet in this row
                            srow[:] = 0.0
                            alpha[r] = 1.0
                            continue
                        alpha[r] = vmath.exp(row_max[r] - new_max)
                        total = 0.0
                        for c in range(limit):
                            e = vmath.exp(srow[c] - new_max)
                            srow[c] = e
                            total += e
                        srow[limit:] = 0.0
                        row_sum[r] = row_sum[r] * alpha[r] + total
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
                    if total > 0.0:
                        inv = 1.0 / total
                        for e in range(Ev):
                            acc[r, e] *= inv
                        lse[n, i0 + r] = row_max[r] + np.log(total)
                    else:  # a row with every key masked (or no key at all): torch's zeros
                        acc[r, :] = 0.0
                        lse[n, i0 + r] = np.inf


def _attention_backward(
    q,
    k,
    v,
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
    """Gradients of ``_attention_forward``'s output given its ``grad``: dq, dk, dv (shaped as
    q, k, v) and, with ``need_dbias``, dbias (shaped as the 3-D bias), summed over the slices it
    broadcast over through per-worker partial sums ``dbias_parts`` (workers, *bias.shape).

    scratch is (workers, 2 * block_q * block_k + block_q * (E + 1) + block_k * max(E, Ev))."""
    N, Tq, E = q.shape
    Tk, Ev = k.shape[1], v.shape[2]
    workers = scratch.shape[0]
    dropping = dropout_p > 0.0
    inv_keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
    key = np.uint64(dropout_key[0])
    tile = block_q * block_k
    wide = max(E, Ev)
    for w in prange(workers):
        work = scratch[w]
        dp_all = work[tile : 2 * tile]
        dq_all = work[2 * tile : 2 * tile + block_q * E]
        dkv_all = work[2 * tile + block_q * E : 2 * tile + block_q * E + block_k * wide]
        rowdot = work[2 * tile + block_q * E + block_k * wide :]
        if need_dbias:
            dbias_parts[w] = 0.0
        for n in range(w, N, workers):
            bslice = bias[_slice_offset(n, batch_shape, bias_strides)]
            kslice = keep[_slice_offset(n, batch_shape, keep_strides)]
            dbslice = dbias_parts[w, _slice_offset(n, batch_shape, bias_strides)]
            qn, kn, vn, gn, on = q[n], k[n], v[n], grad[n], out[n]
            dk[n] = 0.0
            dv[n] = 0.0
            for i0 in range(0, Tq, block_q):
                i1 = min(i0 + block_q, Tq)
                rows = i1 - i0
                for r in range(rows):
                    total = 0.0
                    for e in range(Ev):
                        total += np.float64(gn[i0 + r, e]) * on[i0 + r, e]
                    rowdot[r] = total
                dq_rows = dq[n, i0:i1]
                j_end = min(Tk, i1) if causal else Tk
                if j_end == 0:
                    dq_rows[:, :] = 0.0
                for j0 in range(0, j_end, block_k):
                    j1 = min(j0 + block_k, j_end)
                    cols = j1 - j0
                    s = work[: rows * cols].reshape((rows, cols))
                    dp = dp_all[: rows * cols].reshape((rows, cols))
                    np.dot(qn[i0:i1], kn[j0:j1].T, s)
                    np.dot(gn[i0:i1], vn[j0:j1].T, dp)
                    for r in range(rows):
                        i = i0 + r
                        srow, dprow = s[r], dp[r]
                        limit = max(0, min(cols, i + 1 - j0)) if causal else cols
                        brow = bslice[i if bslice.shape[0] > 1 else 0]
                        krow = kslice[i if kslice.shape[0] > 1 else 0]
                        if brow.size > 1:
                            brow = brow[j0:j1]
                        if krow.size > 1:
                            krow = krow[j0:j1]
                        _scores(srow, limit, scale, has_bias, brow, has_keep, krow)
                        row_lse = lse[n, i]
                        d = rowdot[r]
                        base = (n * Tq + i) * Tk + j0
                        for c in range(limit):
                            p = vmath.exp(srow[c] - row_lse)
                            g = dprow[c]
                            if dropping:
                                z = _drop_scale(key, base + c, dropout_p, inv_keep)
                                srow[c] = p * z
                                g = g * z
                            else:
                                srow[c] = p
                            dprow[c] = p * (g - d)
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
                        for c in range(limit):
                            dprow[c] *= scale
                    dkv = dkv_all[: cols * Ev].reshape((cols, Ev))
                    np.dot(s.T, gn[i0:i1], dkv)
                    dv[n, j0:j1] += dkv
                    if j0 == 0:
                        np.dot(dp, kn[j0:j1], dq_rows)
                    else:
                        dq_tmp = dq_all[: rows * E].reshape((rows, E))
                        np.dot(dp, kn[j0:j1], dq_tmp)
                        dq_rows += dq_tmp
                    dkv = dkv_all[: cols * E].reshape((cols, E))
                    np.dot(dp.T, qn[i0:i1], dkv)
                    dk[n, j0:j1] += dkv
    if need_dbias:
        dbias[...] = 0.0
        for w in range(workers):
            dbias += dbias_parts[w]


attention_forward = sized_kernel(_attention_forward, PARALLEL_MIN_ATTENTION)
attention_backward = sized_kernel(_attention_backward, PARALLEL_MIN_ATTENTION)
