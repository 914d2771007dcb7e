"""Scaled dot-product attention: a tiled, flash-style forward and backward.

Per (batch x head) slice, queries are taken ``block_q`` rows at a time against keys ``block_k``
columns at a time. The forward keeps a running row maximum and sum of exponentials and saves
only the log-sum-exp per query row; the backward recomputes each tile of probabilities from it.
Without mask or dropout, each tile's scores are taken transposed (K Q^T, a row per key), so
that the softmax's passes run along each key's queries with the per-query statistics as
vectors, one call per tile (``_softmax_columns``, ``_softmax_grad_columns``); such a tile ends
at the last key its queries attend.
No (Tq, Tk) matrix is ever held: the extra memory is the output, the log-sum-exp and one
share's tiles per thread, all passed in by the op (the kernels allocate nothing).

q, k, v, the output and the gradients are 2-D (rows, columns) arrays, one row per position,
and a (batch, head) slice is a block of them: rows b * T to (b + 1) * T (T the length of that
array's sequences) and, for head h, the head size's columns from the array's first column plus
h head sizes. ``scaled_dot_product_attention`` hands over (slices * T, head size) arrays with
one head per batch element; ``packed_self_attention`` the (batch * T, 3C) projection, q, k and
v side by side, and a (batch * T, C) output in the layout the next projection reads, so that
no transposed copy is made on either side. Every row a kernel touches is a unit-stride slice of
a C-contiguous array (Numba types it contiguous), so the copies into scratch, the output
writes and the gradient updates are loops LLVM vectorizes; strided 4-D views of the same
memory were 40% slower per call at (12, 4, 64, 32). The kernels copy each slice's keys and
values, and each query tile, into contiguous per-share scratch (BLAS reads strided rows only
through a copy in Numba), and write each output tile and gradient row straight into place.

Each tile's products are GEMMs through NumPy's OpenBLAS (``linalg.dot_into``, as the linear
layer's: one BLAS library in a transformer's step, and no per-call checks and wrapper of
Numba's ``np.dot``), sized by the op so that OpenBLAS runs each on one thread
(firefly.kernels.linalg.SINGLE_THREAD_GEMM): the threads are the kernels' shares, run at
once on Numba's threads (``_jit.run_shares``: the kernel is compiled once, with no parfor),
each taking a contiguous run of slices (whole batch elements where the count divides: no two
threads write one row of the packed layouts), so no two threads write one gradient.

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
from llvmlite import ir
from numba.extending import intrinsic

from firefly.kernels import vmath
from firefly.kernels._jit import (
    called_helper,
    driven_kernel,
    inline_helper,
    kernel_driver,
    run_shares,
    scalar,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.families import _reassociated_sum
from firefly.kernels.linalg import SINGLE_THREAD_GEMM, dot_into

# Below this many elements of the queries' array (or the output's) a call runs as one share:
# waking the thread pool costs more than the slices save.
PARALLEL_MIN_ATTENTION = 32768
# Independent maxima a row is dealt across: without fastmath LLVM keeps one running maximum in
# order; independent lanes vectorize. (Sums reassociate instead: _reassociated_sum.)
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


@intrinsic
def _borrowed(typingctx, array):
    """``array`` without its meminfo: the same data, shape and strides, whose views (every
    row, tile and slice the kernels take) then count no references. Numba counts a view's
    reference on its array's meminfo with an atomic add; two shares counting on the one
    meminfo of q, k, v (the packed qkv) or the scratch from two cores pull its cache line back
    and forth, which the prange kernels never did: their gufunc got its arrays with no meminfo
    (docs/performance.md, "Attention on run_shares"). Only for a driven kernel's arguments:
    its caller holds the arrays for the whole call, and no view outlives it."""

    def codegen(context, builder, signature, args):
        proxy = context.make_array(signature.args[0])(context, builder, value=args[0])
        proxy.meminfo = ir.Constant(proxy.meminfo.type, None)
        return proxy._getvalue()

    return array(array), codegen


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
def _exp_sum(row, limit, scale, shift):
    """row[:limit] = exp(row[:limit] * scale - shift) in place, returning their sum (in the
    dtype, in any order: _reassociated_sum). A function of its own rather than inlined:
    vmath.exp inlined into the kernels' nested loops tripped Numba's IR scope check
    (NumbaIRAssumptionWarning)."""
    for c in range(limit):
        row[c] = vmath.exp(row[c] * scale - shift)
    return _reassociated_sum(row[:limit])


@called_helper(reassociate=True)
def _row_dot(g, o):
    """sum(g * o) over a row, each product in float64 (exact for float32) and summed in any
    order, so that the loop vectorizes: in order it was one dependent float64 add per
    element, per query row."""
    total = 0.0
    for e in range(g.size):
        total += np.float64(g[e]) * o[e]
    return total


@called_helper
def _exp_shifted(row, limit, shift):
    """row[:limit] = exp(row[:limit] - shift) in place (a function of its own, as _exp_sum)."""
    for c in range(limit):
        row[c] = vmath.exp(row[c] - shift)


@called_helper
def _softmax_columns(st, offset, causal, scale, row_max, row_sum, alpha):
    """One key tile of the forward without mask or dropout, its scores transposed: st[j, r]
    the raw score of key j against query r (key j hidden from rows r < j + offset when
    causal). Updates each query's running max (scaled) and sum, sets alpha[r] to the factor
    that rescales the query's earlier sums and products, and overwrites st with the
    probabilities exp(s * scale - max), 0 where hidden. Each loop runs along the queries of
    one key, a contiguous row, with no per-query call: over the scores untransposed, each
    query's row of a few dozen keys cost a call and a vector loop's start and tail per pass."""
    cols, rows = st.shape
    zero = row_max.dtype.type(0)
    for r in range(rows):
        alpha[r] = -np.inf  # the tile's largest raw score per query, first
    for j in range(cols):
        lo = min(rows, max(0, j + offset)) if causal else 0
        srow = st[j]
        for r in range(rows):  # the whole row, as the exp pass below
            alpha[r] = srow[r] if r >= lo and srow[r] > alpha[r] else alpha[r]
    for r in range(rows):
        # scale > 0: the largest raw score, scaled, is the largest scaled score
        old, top = row_max[r], alpha[r] * scale
        new = top if not old >= top else old
        alpha[r] = np.exp(old - new) if new > -np.inf else 1.0
        row_max[r] = new
        row_sum[r] *= alpha[r]
    for j in range(cols):
        lo = min(rows, max(0, j + offset)) if causal else 0
        srow = st[j]
        # Over the whole row, the hidden queries' p selected away: a loop from lo ran its
        # last few queries as scalar code, an exp each, on every diagonal tile's row.
        for r in range(rows):
            # a query with no finite score yet (new = -inf) gets p = 0 from a shift of 0
            p = vmath.exp(srow[r] * scale - (row_max[r] if row_max[r] > -np.inf else zero))
            p = p if r >= lo else zero
            srow[r] = p
            row_sum[r] += p


@called_helper
def _softmax_grad_columns(st, dpt, offset, causal, scale, shift, d):
    """The backward's key tile without mask, dropout or bias gradient, transposed as
    _softmax_columns's: st[j, r] the raw score and dpt[j, r] dO V^T of key j against query r,
    shift[r] and d[r] the query's log-sum-exp and sum(dO * O). Overwrites st with p =
    exp(s * scale - shift) and dpt with p * (dp - d) * scale (as p * (dp * scale - d *
    scale)), both 0 where causal hides key j from query r (r < j + offset), in loops along
    each key's queries."""
    cols, rows = st.shape
    zero = st.dtype.type(0)
    for j in range(cols):
        lo = min(rows, max(0, j + offset)) if causal else 0
        srow, dprow = st[j], dpt[j]
        for r in range(rows):  # the whole row, as _softmax_columns's
            p = vmath.exp(srow[r] * scale - shift[r])
            ds = p * (dprow[r] * scale - d[r] * scale)
            srow[r] = p if r >= lo else zero
            dprow[r] = ds if r >= lo else zero


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
def _kept_keys(kslice, has_keep, tk):
    """How many leading keys a slice can attend: all ``tk`` but for a keep mask that
    broadcasts over the rows (a key padding mask), whose masked keys after its last kept one
    are left out of the tiles (their scores, products and gradients; dk and dv rows stay 0)
    rather than computed and masked."""
    if not has_keep or kslice.shape[0] > 1:
        return tk
    krow = kslice[0]
    if krow.size == 1:
        return tk if krow[0] else 0
    end = tk
    while end > 0 and not krow[end - 1]:
        end -= 1
    return end


@inline_helper
def _transpose_blocks(x, row0, col0, rows, width, block, out):
    """The block x[row0 : row0 + rows, col0 : col0 + width] into ``out`` as consecutive
    (width, cols) blocks of ``block`` columns of its transpose, so that products with it
    transposed are plain (non-transposed) GEMMs, which OpenBLAS runs faster."""
    for j0 in range(0, rows, block):
        cols = min(block, rows - j0)
        tile = out[j0 * width : (j0 + cols) * width].reshape((width, cols))
        for c in range(cols):
            row = x[row0 + j0 + c, col0 : col0 + width]
            for d in range(width):
                tile[d, c] = row[d]


@inline_helper
def _gather_rows(x, row0, col0, out):
    """out[r] = x[row0 + r, col0 : col0 + out.shape[1]] for each row r of a contiguous ``out``."""
    width = out.shape[1]
    for r in range(out.shape[0]):
        row, dest = x[row0 + r, col0 : col0 + width], out[r]
        for c in range(width):
            dest[c] = row[c]


@inline_helper
def _scatter_rows(x, out, row0, col0):
    """out[row0 + r, col0 : col0 + x.shape[1]] = x[r] for each row r of ``x``."""
    width = x.shape[1]
    for r in range(x.shape[0]):
        row, dest = x[r], out[row0 + r, col0 : col0 + width]
        for c in range(width):
            dest[c] = row[c]


@inline_helper
def _add_rows(target, row0, col0, addend):
    """target[row0 + r, col0 : col0 + addend.shape[1]] += addend[r] for each row r."""
    width = addend.shape[1]
    for r in range(addend.shape[0]):
        row, extra = target[row0 + r, col0 : col0 + width], addend[r]
        for c in range(width):
            row[c] += extra[c]


@inline_helper
def _zero_rows(target, row0, col0, rows, width):
    """target[row0 : row0 + rows, col0 : col0 + width] = 0."""
    for r in range(row0, row0 + rows):
        row = target[r, col0 : col0 + width]
        for c in range(width):
            row[c] = 0.0


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


@called_helper
def _add_products(p, v_tile, acc, tmp_all, alpha, first):
    """The forward's products of one key tile: acc = p v_tile on a query tile's first key
    tile, else acc * alpha (per row, the rescale of the earlier tiles) + p v_tile, through
    scratch ``tmp_all``. ``p`` (rows, keys) may be a transposed view (BLAS's flag)."""
    rows, Ev = acc.shape
    if first:
        dot_into(p, v_tile, acc)
    else:
        tmp = tmp_all[: rows * Ev].reshape((rows, Ev))
        dot_into(p, v_tile, tmp)
        for r in range(rows):
            a = alpha[r]
            for e in range(Ev):
                acc[r, e] = acc[r, e] * a + tmp[r, e]


@called_helper
def _tile_gradients(
    pt,
    ds,
    dst,
    g_tile,
    q_tile,
    k_tile,
    dkv_all,
    dq_all,
    dq_rows,
    dk,
    dv,
    row0,
    k_col,
    v_col,
    first,
    one_block,
):
    """The backward's products of one key tile, given P^T (keys, queries), dS and dS^T in
    either layout (one of each pair a transposed view): dV = P^T dO and dK = dS^T Q for the
    tile's keys (rows ``row0`` on: written in place with one query tile, else added), and
    dq_rows = dS K on a query tile's first key tile, else added to."""
    cols, Ev = pt.shape[0], g_tile.shape[1]
    rows, E = q_tile.shape
    dkv = dkv_all[: cols * Ev].reshape((cols, Ev))
    dot_into(pt, g_tile, dkv)
    if one_block:
        _scatter_rows(dkv, dv, row0, v_col)
    else:
        _add_rows(dv, row0, v_col, dkv)
    if first:
        dot_into(ds, k_tile, dq_rows)
    else:
        dq_tmp = dq_all[: rows * E].reshape((rows, E))
        dot_into(ds, k_tile, dq_tmp)
        for r in range(rows):
            dq_row, extra = dq_rows[r], dq_tmp[r]
            for e in range(E):
                dq_row[e] += extra[e]
    dkv = dkv_all[: cols * E].reshape((cols, E))
    dot_into(dst, q_tile, dkv)
    if one_block:
        _scatter_rows(dkv, dk, row0, k_col)
    else:
        _add_rows(dk, row0, k_col, dkv)


@driven_kernel
def _forward_share(
    t,
    threads,
    q,
    k,
    v,
    heads,
    head_sizes,
    columns,
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
    """Share t of ``threads`` of ``attention_forward``, a contiguous run of slices: out =
    softmax(q k^T * scale + mask) v per slice, with lse the per-row log-sum-exp.

    q (B * Tq, *), k and v (B * Tk, *), out (B * Tq, heads * Ev), 2-D; head h of batch element
    b reads q[b * Tq : (b + 1) * Tq, qc + h * E : qc + (h + 1) * E], k's rows b * Tk onwards
    from column kc + h * E and v's from vc + h * Ev ((E, Ev) = head_sizes, (qc, kc, vc) =
    columns: q, k and v may be one array, their heads side by side), h < heads, and writes
    out's columns h * Ev onwards. The slices are numbered n = b * heads + h (lse (B * heads,
    Tq), the masks' and dropout's slice index); scratch (threads, forward_scratch_size(...))
    and lanes (threads, LANES) in the inputs' dtype."""
    if t < 0:
        return each_share(threads)
    q, k, v, out, lse = _borrowed(q), _borrowed(k), _borrowed(v), _borrowed(out), _borrowed(lse)
    bias, keep, scratch, lanes = (
        _borrowed(bias),
        _borrowed(keep),
        _borrowed(scratch),
        _borrowed(lanes),
    )
    N, Tq = lse.shape
    H = heads
    E, Ev = head_sizes
    Tk = k.shape[0] // (N // H)
    qc, kc, vc = columns
    dropping = dropout_p > 0.0
    inv_keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
    key = np.uint64(dropout_key[0])
    # No mask: the scores are scaled inside the exp pass instead of a pass of their own.
    plain = not has_bias and not has_keep and scale > 0
    # ... and no dropout: each key tile's scores transposed, so that the softmax's loops run
    # along the queries (_softmax_columns)
    columnwise = plain and not dropping
    one = vmath.like(1.0, scale)
    tile = block_q * block_k
    work = scratch[t]
    lane = lanes[t]
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
    n0, n1 = share_range(t, threads, N)
    for n in range(n0, n1):
        b, h = n // H, n % H
        q_row, k_row = b * Tq, b * Tk
        q_col, k_col, v_col, out_col = qc + h * E, kc + h * E, vc + h * Ev, h * Ev
        bslice = bias[_slice_offset(n, batch_shape, bias_strides)]
        kslice = keep[_slice_offset(n, batch_shape, keep_strides)]
        kept = _kept_keys(kslice, has_keep, Tk)
        kn = kt.reshape((Tk, E))
        if columnwise:  # K's rows: scores transposed are K Q^T
            _gather_rows(k, k_row, k_col, kn)
        else:
            _transpose_blocks(k, k_row, k_col, kept, E, block_k, kt)
        _gather_rows(v, k_row, v_col, vn)
        for i0 in range(0, Tq, block_q):
            i1 = min(i0 + block_q, Tq)
            rows = i1 - i0
            q_tile = q_all[: rows * E].reshape((rows, E))
            if columnwise:  # Q^T
                _transpose_blocks(q, q_row + i0, q_col, rows, E, rows, q_all)
            else:
                _gather_rows(q, q_row + i0, q_col, q_tile)
            acc = acc_all[: rows * Ev].reshape((rows, Ev))
            j_end = min(kept, i1) if causal else kept
            row_max[:rows] = -np.inf
            row_sum[:rows] = 0.0
            for j0 in range(0, j_end, block_k):
                # a whole transposed block, or K's rows up to the last one the tile attends
                j1 = min(j0 + block_k, j_end if columnwise else kept)
                cols = j1 - j0
                if columnwise:
                    st = work[: rows * cols].reshape((cols, rows))
                    dot_into(kn[j0:j1], q_all[: rows * E].reshape((E, rows)), st)
                    _softmax_columns(
                        st, j0 - i0, causal, scale, row_max[:rows], row_sum[:rows], alpha[:rows]
                    )
                    _add_products(st.T, vn[j0:j1], acc, tmp_all, alpha, j0 == 0)
                    continue
                s = work[: rows * cols].reshape((rows, cols))
                dot_into(q_tile, kt[j0 * E : j0 * E + E * cols].reshape((E, cols)), s)
                for r in range(rows):
                    i = i0 + r
                    srow = s[r]
                    limit = max(0, min(cols, i + 1 - j0)) if causal else cols
                    if plain:
                        # scale > 0: the largest raw score, scaled, is the largest scaled
                        # score (rounding is monotone), so the scale moves into the exp pass
                        row_top = _row_max(srow, limit, lane) * scale
                        exp_scale = scale
                    else:
                        brow, krow = _row_views(bslice, kslice, i, j0, j1)
                        _scores(srow, limit, scale, has_bias, brow, has_keep, krow)
                        row_top = _row_max(srow, limit, lane)
                        exp_scale = one
                    new_max = max(row_max[r], row_top)
                    if new_max == -np.inf:  # nothing attended yet in this row
                        srow[:] = 0.0
                        alpha[r] = 1.0
                        continue
                    alpha[r] = np.exp(row_max[r] - new_max)
                    total = _exp_sum(srow, limit, exp_scale, vmath.like(new_max, scale))
                    srow[limit:] = 0.0
                    row_sum[r] = row_sum[r] * alpha[r] + total
                    row_max[r] = new_max
                    if dropping:
                        base = (n * Tq + i) * Tk + j0
                        for c in range(limit):
                            srow[c] *= _drop_scale(key, base + c, dropout_p, inv_keep)
                _add_products(s, vn[j0:j1], acc, tmp_all, alpha, j0 == 0)
            for r in range(rows):
                total = row_sum[r]
                dest = out[q_row + i0 + r, out_col : out_col + Ev]
                if total > 0.0:
                    inv = vmath.like(1.0 / total, scale)
                    for e in range(Ev):
                        dest[e] = acc[r, e] * inv
                    lse[n, i0 + r] = row_max[r] + np.log(total)
                else:  # a row with every key masked (or no key at all): torch's zeros
                    dest[:] = 0.0
                    lse[n, i0 + r] = np.inf


def forward_scratch_size(block_q, block_k, tk, e, ev):
    """Elements of one share's scratch in ``attention_forward``."""
    return block_q * (block_k + 2 * ev + e + 3) + (e + ev) * tk


@driven_kernel
def _backward_share(
    t,
    threads,
    q,
    k,
    v,
    heads,
    head_sizes,
    columns,
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
):
    """Share t of ``threads`` of ``attention_backward``, a contiguous run of slices: the
    gradients of the forward's output given its ``grad``, dq, dk, dv (laid out as q, k, v, the
    same columns; they may be one array as q, k and v may), out and grad (B * Tq, heads * Ev)
    as the forward's out; and, with ``need_dbias``, the share's part of dbias (shaped as the
    3-D bias, summed over the slices it broadcast over) in ``dbias_parts[t]`` (dbias_parts
    (threads, *bias.shape)).

    scratch is (threads, backward_scratch_size(...))."""
    if t < 0:
        return each_share(threads)
    q, k, v, out, lse = _borrowed(q), _borrowed(k), _borrowed(v), _borrowed(out), _borrowed(lse)
    bias, keep, grad, scratch = (
        _borrowed(bias),
        _borrowed(keep),
        _borrowed(grad),
        _borrowed(scratch),
    )
    dq, dk, dv, dbias_parts = _borrowed(dq), _borrowed(dk), _borrowed(dv), _borrowed(dbias_parts)
    N, Tq = lse.shape
    H = heads
    E, Ev = head_sizes
    Tk = k.shape[0] // (N // H)
    qc, kc, vc = columns
    dropping = dropout_p > 0.0
    inv_keep = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
    key = np.uint64(dropout_key[0])
    # No mask, dropout or bias gradient: each key tile's scores transposed, as the forward's
    # (_softmax_grad_columns; with the log-sum-exp known, the scale's sign does not matter).
    columnwise = not has_bias and not has_keep and not dropping and not need_dbias
    # One query tile: each key tile's dk and dv rows are written once, in place, rather than
    # zeroed first and added to.
    one_block = Tq <= block_q
    tile = block_q * block_k
    wide = max(E, Ev)
    work = scratch[t]
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
    start += Tk * E
    qt_all = work[start : start + block_q * E]
    start += block_q * E
    gt_all = work[start : start + block_q * Ev]
    vn = vt.reshape((Tk, Ev))
    if need_dbias:
        dbias_parts[t] = 0.0
    n0, n1 = share_range(t, threads, N)
    for n in range(n0, n1):
        b, h = n // H, n % H
        q_row, k_row = b * Tq, b * Tk
        q_col, k_col, v_col, out_col = qc + h * E, kc + h * E, vc + h * Ev, h * Ev
        bslice = bias[_slice_offset(n, batch_shape, bias_strides)]
        kslice = keep[_slice_offset(n, batch_shape, keep_strides)]
        dbslice = dbias_parts[t, _slice_offset(n, batch_shape, bias_strides) if need_dbias else 0]
        # K both ways: transposed blocks for the scores, rows for dq's product (a plain
        # GEMM: BLAS's transposed-operand path is slower, see _transpose_blocks).
        _gather_rows(k, k_row, k_col, kn)
        kept = _kept_keys(kslice, has_keep, Tk)
        if columnwise:  # V's rows: dP transposed is V dO^T
            _gather_rows(v, k_row, v_col, vn)
        else:
            _transpose_blocks(k, k_row, k_col, kept, E, block_k, kt)
            _transpose_blocks(v, k_row, v_col, kept, Ev, block_k, vt)
        if not one_block:
            _zero_rows(dk, k_row, k_col, Tk, E)
            _zero_rows(dv, k_row, v_col, Tk, Ev)
        for i0 in range(0, Tq, block_q):
            i1 = min(i0 + block_q, Tq)
            rows = i1 - i0
            q_tile = q_all[: rows * E].reshape((rows, E))
            _gather_rows(q, q_row + i0, q_col, q_tile)
            g_tile = g_all[: rows * Ev].reshape((rows, Ev))
            _gather_rows(grad, q_row + i0, out_col, g_tile)
            for r in range(rows):
                rowdot[r] = _row_dot(g_tile[r], out[q_row + i0 + r, out_col : out_col + Ev])
            if columnwise:  # Q^T and dO^T
                _transpose_blocks(q, q_row + i0, q_col, rows, E, rows, qt_all)
                _transpose_blocks(grad, q_row + i0, out_col, rows, Ev, rows, gt_all)
            dq_rows = dq_rows_all[: rows * E].reshape((rows, E))
            j_end = min(kept, i1) if causal else kept
            if one_block:  # the key rows no tile below writes
                _zero_rows(dk, k_row + j_end, k_col, Tk - j_end, E)
                _zero_rows(dv, k_row + j_end, v_col, Tk - j_end, Ev)
            if j_end == 0:
                dq_rows[:, :] = 0.0
            for j0 in range(0, j_end, block_k):
                # a whole transposed block, or K's and V's rows up to the last one attended
                j1 = min(j0 + block_k, j_end if columnwise else kept)
                cols = j1 - j0
                if columnwise:
                    st = work[: rows * cols].reshape((cols, rows))
                    dpt = dp_all[: rows * cols].reshape((cols, rows))
                    dot_into(kn[j0:j1], qt_all[: rows * E].reshape((E, rows)), st)
                    dot_into(vn[j0:j1], gt_all[: rows * Ev].reshape((Ev, rows)), dpt)
                    _softmax_grad_columns(
                        st, dpt, j0 - i0, causal, scale, lse[n, i0:i1], rowdot[:rows]
                    )
                    _tile_gradients(
                        st,
                        dpt.T,
                        dpt,
                        g_tile,
                        q_tile,
                        kn[j0:j1],
                        dkv_all,
                        dq_all,
                        dq_rows,
                        dk,
                        dv,
                        k_row + j0,
                        k_col,
                        v_col,
                        j0 == 0,
                        one_block,
                    )
                    continue
                s = work[: rows * cols].reshape((rows, cols))
                dp = dp_all[: rows * cols].reshape((rows, cols))
                dot_into(q_tile, kt[j0 * E : j0 * E + E * cols].reshape((E, cols)), s)
                dot_into(g_tile, vt[j0 * Ev : j0 * Ev + Ev * cols].reshape((Ev, cols)), dp)
                for r in range(rows):
                    i = i0 + r
                    srow, dprow = s[r], dp[r]
                    limit = max(0, min(cols, i + 1 - j0)) if causal else cols
                    shift = lse[n, i]
                    d = vmath.like(rowdot[r], scale)
                    brow, krow = _row_views(bslice, kslice, i, j0, j1)
                    _scores(srow, limit, scale, has_bias, brow, has_keep, krow)
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
                _tile_gradients(
                    s.T,
                    dp,
                    dp.T,
                    g_tile,
                    q_tile,
                    kn[j0:j1],
                    dkv_all,
                    dq_all,
                    dq_rows,
                    dk,
                    dv,
                    k_row + j0,
                    k_col,
                    v_col,
                    j0 == 0,
                    one_block,
                )
            _scatter_rows(dq_rows, dq, q_row + i0, q_col)


def backward_scratch_size(block_q, block_k, tk, e, ev):
    """Elements of one share's scratch in ``attention_backward``."""
    return (
        2 * block_q * block_k
        + block_q * (3 * e + ev + 1)
        + block_k * max(e, ev)
        + (2 * e + ev) * tk
        + block_q * (e + ev)
    )


def _products_may_thread(block_q, block_k, head_sizes):
    """Whether a tile's products can exceed SINGLE_THREAD_GEMM multiply-adds, which OpenBLAS
    would run on threads of its own: only then do the shares limit BLAS to one thread
    (``run_shares``), which costs microseconds a call. The op sizes the tiles within it for
    head sizes up to 256."""
    return block_q * block_k * max(head_sizes) > SINGLE_THREAD_GEMM


@kernel_driver
def attention_forward(
    q,
    k,
    v,
    heads,
    head_sizes,
    columns,
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
    """``_forward_share`` for each of scratch's rows, one share per row, at once on Numba's
    threads (``run_shares``)."""
    run_shares(
        _forward_share,
        scratch.shape[0],
        q,
        k,
        v,
        heads,
        head_sizes,
        columns,
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
        limit_blas=_products_may_thread(block_q, block_k, head_sizes),
    )


@kernel_driver
def attention_backward(
    q,
    k,
    v,
    heads,
    head_sizes,
    columns,
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
    """``_backward_share`` for each of scratch's rows, one share per row, at once on Numba's
    threads (``run_shares``); then dbias, the sum of the shares' parts, when ``need_dbias``."""
    run_shares(
        _backward_share,
        scratch.shape[0],
        q,
        k,
        v,
        heads,
        head_sizes,
        columns,
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
        limit_blas=_products_may_thread(block_q, block_k, head_sizes),
    )
    if need_dbias:
        dbias_parts.sum(axis=0, out=dbias)
