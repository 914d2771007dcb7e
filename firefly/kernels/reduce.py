"""Reductions over the middle axis of a contiguous (outer, reduced, inner) array.

``firefly.ops.reduce`` reshapes any run of adjacent axes into this form without copying, so
one kernel serves axis=None, a single axis, and tuples of axes. Two layouts matter:

- rows (inner == 1): each output reduces one contiguous run of ``reduced`` elements;
- columns (inner > 1): each output row is an elementwise reduction of ``reduced`` rows.

Either way the reduced axis is cut into slabs when there are too few outputs to keep every
core busy (a full reduction has one), and the slabs' partial results are combined at the end.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from firefly.kernels._jit import called_helper, inline_helper, memory_bound

# Reductions of fewer elements than this keep one task per output (row or column group);
# larger ones with fewer than _TASKS outputs split the reduced axis into up to _TASKS slabs.
_SPLIT_MIN = 65_536
_TASKS = 16
# A column slab of fewer rows would make the float64 partial sums cost more than they save.
_MIN_SLAB_ROWS = 16
# float64 partial sums that a contiguous run is dealt across. Without fastmath LLVM keeps a
# single running sum in order, one dependent add after another; independent lanes vectorize.
LANES = 32
# Elements summed in LANES partial sums of the input's dtype before they are added into a
# float64 total (sum_chunked): each float32 lane then adds at most SUM_CHUNK / LANES terms,
# so the relative error stays near 32 float32 roundings however long the row.
SUM_CHUNK = 1024


def _llvm_float_max(name, flags, doc):
    """An intrinsic max(a, b) of two floats of one type, as the LLVM intrinsic ``name`` called
    with the fastmath ``flags``."""

    def typer(typingctx, a, b):
        if not isinstance(a, types.Float) or a != b:
            return None

        def codegen(context, builder, signature, args):
            value_type = args[0].type
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(value_type, [value_type, value_type]),
                f"llvm.{name}.f{a.bitwidth}",
            )
            return builder.call(fn, args, fastmath=flags)

        return a(a, b), codegen

    typer.__name__ = typer.__qualname__ = f"_{name}"
    typer.__doc__ = doc
    return intrinsic(typer)


# LLVM vectorizes a running ``maximum`` without fastmath because, NaNs included, it is
# associative; a running np.maximum (compare and select) stays one element at a time.
_maximum = _llvm_float_max(
    "maximum", (), "max(a, b) as LLVM's ``maximum``: NaN if either is NaN, as np.max."
)


@inline_helper
def _slabs(O, R, I, min_rows):
    """How many slabs of at least ``min_rows`` the reduced axis of each outer index is cut into."""
    if O >= _TASKS or O * R * I < _SPLIT_MIN:
        return 1
    return max(1, min(_TASKS, R // min_rows))


@inline_helper
def combine_lanes(lanes):
    """The float64 sum of LANES partial sums, as a tree: halving ``lanes`` in place vectorizes,
    where one running total over them is LANES dependent adds (the fixed cost of a short row)."""
    half = LANES // 2
    while half >= 4:
        for k in range(half):
            lanes[k] += lanes[half + k]
        half //= 2
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


@called_helper(reassociate=True)
def _sum_any_order(v):
    """sum(v) in float64 for a contiguous 1-D ``v``, added in whatever order LLVM vectorizes
    (``called_helper(reassociate=True)``): each element converts to float64 exactly, and
    reordering n float64 adds moves the result by at most about n * 2**-53 * sum(|v|), a few
    hundred times less than one float32 rounding for the short runs it is given. NaN and inf
    propagate as in any order."""
    s = 0.0
    for i in range(v.size):
        s += v[i]
    return s


@inline_helper
def sum_contiguous(v, lanes):
    """sum(v) for a contiguous 1-D ``v``, accumulated in float64 from quads summed in v's dtype;
    ``lanes`` is LANES float64s of scratch."""
    n = v.size
    # A run shorter than one quad of blocks (rows of up to 127 elements, and every row's rest)
    # goes to _sum_any_order: resetting and combining the lanes for it cost more than the sum
    # (rows of 100 took three times torch's time).
    if n < 4 * LANES:
        return _sum_any_order(v)
    # Four blocks of LANES elements at a time: one pass over ``lanes`` per 4 * LANES elements.
    # Each quad is added in v's dtype, as a pairwise tree two roundings deep, and only its sum
    # is converted: float32 quads keep the loop at float32 width (converting every element to
    # float64 made long float32 rows 1.5x slower). The quads' error is at most 2u * sum(|v|)
    # (u = 2**-24 for float32), against NumPy's pairwise bound of u * log2(n) * sum(|v|).
    W = LANES
    lanes[:] = 0.0
    b = 0
    # Each block is a view indexed from 0: indexed as v[b + k], LLVM cannot drop Numba's
    # negative-index checks, and a row of 100 elements took twice as long.
    while b + 4 * W <= n:
        block = v[b : b + 4 * W]
        for k in range(W):
            lanes[k] += (block[k] + block[W + k]) + (block[2 * W + k] + block[3 * W + k])
        b += 4 * W
    return _sum_any_order(lanes) + _sum_any_order(v[b:])


@inline_helper
def _sum_rows_into(x, acc):
    """acc[i] += sum_r x[r, i] for a (rows, I) block into float64 ``acc``, four rows at a time
    summed in x's dtype first (the quads of sum_contiguous)."""
    R, I = x.shape
    r = 0
    while r + 4 <= R:  # four rows per pass over acc
        x0, x1, x2, x3 = x[r], x[r + 1], x[r + 2], x[r + 3]
        for i in range(I):
            acc[i] += (x0[i] + x1[i]) + (x2[i] + x3[i])
        r += 4
    for rest in range(r, R):
        xr = x[rest]
        for i in range(I):
            acc[i] += xr[i]


@memory_bound
def sum_forward(x, scale, out):
    """out[o, i] = scale * sum_r x[o, r, i]. ``scale`` is 1 for sum and 1/count for mean.

    Sums accumulate in float64 whatever the input dtype, from quads of four elements added in
    the dtype: a float32 result is within 0.5 ulp + 2 * 2**-24 * sum(|x|) of the exact sum
    (the rounding of the result plus the quads' error; NumPy's pairwise float32 sum is bounded
    by log2(n) * 2**-24 * sum(|x|)), and it is correctly rounded wherever the quads add
    exactly, as sums of numbers with few significant bits do.
    """
    O, R, I = x.shape
    if I == 1:
        x2 = x.reshape(O, R)
        slabs = _slabs(O, R, 1, 1)
        tasks = min(O * slabs, _TASKS)
        if slabs == 1:  # many rows: each task sums its rows straight into out
            for t in prange(tasks):
                lanes = np.empty(LANES)  # one per task, not per row: rows may be short
                for o in range(t * O // tasks, (t + 1) * O // tasks):
                    out[o, 0] = sum_contiguous(x2[o], lanes) * scale
            return
        partial = np.empty((O, slabs))
        for t in prange(tasks):
            lanes = np.empty(LANES)
            for os in range(t * O * slabs // tasks, (t + 1) * O * slabs // tasks):
                o, s = os // slabs, os % slabs
                partial[o, s] = sum_contiguous(x2[o, s * R // slabs : (s + 1) * R // slabs], lanes)
        for o in range(O):
            total = 0.0
            for s in range(slabs):
                total += partial[o, s]
            out[o, 0] = total * scale
        return
    slabs = _slabs(O, R, I, _MIN_SLAB_ROWS)
    partial = np.zeros((O, slabs, I))
    for os in prange(O * slabs):
        o, s = os // slabs, os % slabs
        _sum_rows_into(x[o, s * R // slabs : (s + 1) * R // slabs], partial[o, s])
    for o in prange(O):
        total = partial[o, 0]
        for s in range(1, slabs):
            prow = partial[o, s]
            for i in range(I):
                total[i] += prow[i]
        orow = out[o]
        for i in range(I):
            orow[i] = total[i] * scale


@memory_bound
def sum_flat(x, scale, out):
    """out[0] = scale * sum(x) over a flat ``x``: the full reduction (a loss, say). It cuts
    ``x`` into the slabs that ``sum_forward`` cuts one row into, so the two agree bit for bit,
    and it is cheaper to call and far cheaper to compile."""
    (n,) = x.shape  # flat only: another rank is a typing error, not a wild read
    (_,) = out.shape
    # _slabs(1, n, 1, 1) spelled out: its min and max are two more functions to compile, in
    # the kernel that every full reduction (a loss) compiles first.
    slabs = 1 if n < _SPLIT_MIN else _TASKS
    partial = np.empty(slabs)
    for s in prange(slabs):
        partial[s] = sum_contiguous(x[s * n // slabs : (s + 1) * n // slabs], np.empty(LANES))
    total = 0.0
    for s in range(slabs):
        total += partial[s]
    out[0] = total * scale


@memory_bound
def sum_flat_backward(grad, scale, dx):
    """dx[i] = scale * grad[0] over a flat ``dx``: the gradient of a full sum or mean. A kernel
    of its own, not ``sum_backward``'s fill through (1, n, 1): the reshape that fill needs
    costs that kernel more than half its compile."""
    (_,) = grad.shape
    (n,) = dx.shape
    value = grad[0] * scale
    for i in prange(n):
        dx[i] = value


@memory_bound
def sum_backward(grad, scale, dx):
    """dx[o, r, i] = scale * grad[o, i]: the gradient of sum and mean, broadcast back."""
    O, R, I = dx.shape
    if I == 1:
        # A full sum's (or a last-axis sum's) gradient: one value per outer index, filled
        # along R. Written through (O, R), the fill is a contiguous store that vectorizes;
        # through dx[o, r] with I = 1 it ran one element per loop trip, 20x slower.
        fill = dx.reshape(O, R)
        for o in range(O):
            value = grad[o, 0] * scale
            for r in prange(R):
                fill[o, r] = value
        return
    for o in range(O):  # nested, not a flat prange with // and % per row: rows may be short
        grow = grad[o]
        for r in prange(R):
            drow = dx[o, r]
            for i in range(I):
                drow[i] = grow[i] * scale


# ``maxnum`` with ``nnan`` is one ``vmaxps`` on x86, and a running one vectorizes into register
# accumulators (no reduction of compares and selects does without fastmath). Only for operands
# known not to be NaN: for a NaN the result is undefined (poison, never undefined behaviour).
_maxnum_no_nan = _llvm_float_max(
    "maxnum", ("nnan",), "max(a, b) of two floats known not to be NaN."
)


@inline_helper
def _max_select(x, m):
    """x if x > m, else m; NaN wherever x or m is NaN, as np.max."""
    return x if (x > m) | (x != x) else m


# Elements per chunk of max_contiguous: its two passes over a chunk read it from L1.
MAX_CHUNK = 2048


@inline_helper
def max_contiguous(v):
    """max(v) for a contiguous, non-empty 1-D ``v``; NaN if any element is NaN.

    Two passes over each chunk of MAX_CHUNK elements, the second from L1: one looks for a NaN
    (an or of unordered compares, which vectorizes), and only a chunk without one goes to the
    running ``_maxnum_no_nan``, which vectorizes too (fused into one loop, neither vectorized);
    the compare-and-select lanes this replaces cost a reset, a tail and a fold per row, which
    dominated short rows (docs/performance.md). Rows shorter than 32 elements keep one compare
    and select per element, cheaper than two loops and their vector tails.
    """
    n = v.size
    m = v[0]
    if n < 32:
        for i in range(1, n):
            m = _max_select(v[i], m)
        return m
    for lo in range(0, n, MAX_CHUNK):
        chunk = v[lo : min(lo + MAX_CHUNK, n)]  # a view indexed from 0, as in sum_contiguous
        # Its two halves side by side: LLVM folds the pair of self-compares into one
        # unordered compare of the two, half the compares; the last element covers an odd count.
        h = chunk.size // 2
        first, second = chunk[:h], chunk[h : 2 * h]
        nan = chunk[-1] != chunk[-1]
        for i in range(h):
            nan |= (first[i] != first[i]) | (second[i] != second[i])
        if nan:
            return v.dtype.type(np.nan)
        for i in range(chunk.size):
            m = _maxnum_no_nan(m, chunk[i])
    return m


@inline_helper
def _max_rows_into(x, acc):
    """acc[i] = max(acc[i], max_r x[r, i]) for a (rows, I) block."""
    R, I = x.shape
    for r in range(R):
        xr = x[r]
        for i in range(I):
            acc[i] = _maximum(acc[i], xr[i])


@memory_bound
def max_forward(x, out):
    """out[o, i] = max_r x[o, r, i]; any NaN among the reduced elements gives NaN, as np.max."""
    O, R, I = x.shape
    if I == 1:
        x2 = x.reshape(O, R)
        slabs = _slabs(O, R, 1, 1)
        tasks = min(O * slabs, _TASKS)
        if slabs == 1:  # many rows: each task takes its rows straight into out
            for t in prange(tasks):
                for o in range(t * O // tasks, (t + 1) * O // tasks):
                    out[o, 0] = max_contiguous(x2[o])
            return
        partial = np.empty((O, slabs), x.dtype)
        for t in prange(tasks):
            for os in range(t * O * slabs // tasks, (t + 1) * O * slabs // tasks):
                o, s = os // slabs, os % slabs
                partial[o, s] = max_contiguous(x2[o, s * R // slabs : (s + 1) * R // slabs])
        for o in range(O):
            out[o, 0] = max_contiguous(partial[o])
        return
    slabs = _slabs(O, R, I, _MIN_SLAB_ROWS)
    # Each slab starts from its first row; with one slab that is the whole reduction, in out.
    partial = out.reshape(O, 1, I) if slabs == 1 else np.empty((O, slabs, I), x.dtype)
    for os in prange(O * slabs):
        o, s = os // slabs, os % slabs
        r0, r1 = s * R // slabs, (s + 1) * R // slabs
        prow = partial[o, s]
        prow[:] = x[o, r0]
        _max_rows_into(x[o, r0 + 1 : r1], prow)
    if slabs > 1:
        for o in prange(O):
            orow = out[o]
            orow[:] = partial[o, 0]
            _max_rows_into(partial[o, 1:], orow)


@memory_bound
def max_backward(grad, x, out, dx):
    """Sends grad to the maximal elements, split evenly among ties (as torch.amax does).

    Where the maximum is NaN nothing equals it, and the whole gradient is zero.
    """
    O, R, I = x.shape
    slabs = _slabs(O, R, I, 1 if I == 1 else _MIN_SLAB_ROWS)
    ties = np.zeros((O, slabs, I))
    x2, dx2 = x.reshape(O, R * I), dx.reshape(O, R * I)  # used when I == 1: rows
    if I == 1:
        for os in prange(O * slabs):
            o, s = os // slabs, os % slabs
            m = out[o, 0]
            count = 0.0
            for r in range(s * R // slabs, (s + 1) * R // slabs):
                count += x2[o, r] == m
            ties[o, s, 0] = count
    else:
        for os in prange(O * slabs):
            o, s = os // slabs, os % slabs
            orow, trow = out[o], ties[o, s]
            for r in range(s * R // slabs, (s + 1) * R // slabs):
                xr = x[o, r]
                for i in range(I):
                    trow[i] += xr[i] == orow[i]
    share = np.empty((O, I))
    for o in range(O):
        for i in range(I):
            count = 0.0
            for s in range(slabs):
                count += ties[o, s, i]
            share[o, i] = grad[o, i] / count
    if I == 1:
        for os in prange(O * slabs):
            o, s = os // slabs, os % slabs
            m, g = out[o, 0], share[o, 0]
            for r in range(s * R // slabs, (s + 1) * R // slabs):
                dx2[o, r] = g if x2[o, r] == m else 0.0
    else:
        for os in prange(O * slabs):
            o, s = os // slabs, os % slabs
            orow, srow = out[o], share[o]
            for r in range(s * R // slabs, (s + 1) * R // slabs):
                xr, drow = x[o, r], dx[o, r]
                for i in range(I):
                    drow[i] = srow[i] if xr[i] == orow[i] else 0.0
