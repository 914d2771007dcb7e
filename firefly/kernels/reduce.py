"""Reductions over the middle axis of a contiguous (outer, reduced, inner) array.

``firefly.ops.reduce`` reshapes any run of adjacent axes into this form without copying, so
one kernel serves axis=None, a single axis, and tuples of axes. Two layouts matter:

- rows (inner == 1): each output reduces one contiguous run of ``reduced`` elements;
- columns (inner > 1): each output row is an elementwise reduction of ``reduced`` rows.

Either way the reduced axis is cut into slabs when there are too few outputs to keep every
core busy (a full reduction has one), and the slabs' partial results are combined at the end.
"""

import functools
from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from firefly.kernels._jit import (
    PARALLEL_MIN_MEMORY_BOUND,
    called_helper,
    driven_kernel,
    inline_helper,
    memory_bound,
    size_chosen,
    thread_count,
)
from firefly.kernels._shares import each_share, share_range

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


def partials_kernel(
    work: Callable[..., object], stand_in: object, threshold: int = PARALLEL_MIN_MEMORY_BOUND
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """A reduction written as a driven kernel ``fn(t, threads, partial, *args)``
    (``driven_kernel``), made the size-chosen kernel ``kernel(*args)`` (``size_chosen``): the
    serial run (share 0 of 1) below ``threshold`` or on one thread, ``each_share`` above, with
    the ``serial``, ``parallel`` and ``threshold`` hooks of every size-chosen kernel.

    ``partial = work(*args)`` is where the shares leave their partial results: ``each_share``
    hands every share the kernel's own arguments, so the parallel run's caller makes it (with
    the kernel's ``inline_helper``, called from Python). The serial run (threads 1) makes its
    own, in the kernel, and is passed ``stand_in`` (or ``stand_in(*args)`` if it is a
    function): an empty array of the work's Numba type, made once, so that one compile serves
    both runs. The kernel combines the partials once: in its t < 0 call after ``each_share``
    returns, or in the serial run after its loop.

    Written as a prange loop with the combine after it, a reduction is one that the automatic
    rewrite (``_shared_loop``) cannot cut into shares, and it compiled twice, serially and as
    a parfor, the parfor's the costlier."""

    def decorate(fn: Callable[..., object]) -> Callable[..., object]:
        driven = driven_kernel(fn)

        if callable(stand_in):

            def serial(*args):
                return driven(0, 1, stand_in(*args), *args)

        else:  # no Python frame between the op and the kernel
            serial = functools.partial(driven, 0, 1, stand_in)

        def make_serial():
            # Before the kernel is compiled or loaded: its code calls the threading layer's
            # functions, whose symbols launching the layer registers (run_shares).
            thread_count()
            return serial, (driven,)

        def launch(shares, *args):
            return driven(-1, shares, work(*args), *args)

        def rerun(shares, *args):
            return serial(*args)  # all of the kernel: a share's partials are lost with its array

        return size_chosen(fn, threshold, make_serial, lambda: (launch, rerun, ()))

    return decorate


@inline_helper
def kept_chunk_sum(partial, c, threads, total):
    """A partials_kernel's chunk c summed to ``total``: the serial run (threads 1) adds it to
    its running total, which this returns; a share keeps it in ``partial[c]`` for the combine
    after the shares (``sum_in_order``), and adds nothing."""
    if threads == 1:
        return total
    partial[c] = total
    return 0.0


@inline_helper
def sum_in_order(v):
    """The float64 sum of a 1-D ``v``, added first to last: a partials_kernel's combine of its
    chunks' sums, cheaper to compile than ``v.sum()`` (Numba's overload of np.sum)."""
    total = 0.0
    for i in range(v.size):
        total += v[i]
    return total


# Stand-ins for the work arrays of partials_kernel's serial runs: float64, and of a dtype.
EMPTY_1D, EMPTY_2D, EMPTY_3D = np.empty(0), np.empty((0, 0)), np.empty((0, 0, 0))


@functools.cache
def empty_3d(dtype: np.dtype) -> np.ndarray:
    return np.empty((0, 0, 0), dtype)


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
def _slab_count(x):
    """The slabs that sum_forward, max_forward and max_backward cut each reduced run of the
    (outer, reduced, inner) ``x`` into."""
    O, R, I = x.shape
    return _slabs(O, R, I, 1 if I == 1 else _MIN_SLAB_ROWS)


@inline_helper
def _sum_partials(x, scale, out):
    """sum_forward's partial sums, (outer, slabs, inner) float64: empty (outer 0) when each
    output takes one slab, which the share that owns it sums and writes straight to out."""
    O, _, I = x.shape
    slabs = _slab_count(x)
    return np.empty((O if slabs > 1 else 0, slabs, I))


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


@partials_kernel(_sum_partials, EMPTY_3D)
def sum_forward(t, threads, partial, x, scale, out):
    """out[o, i] = scale * sum_r x[o, r, i]. ``scale`` is 1 for sum and 1/count for mean.

    Sums accumulate in float64 whatever the input dtype, from quads of four elements added in
    the dtype: a float32 result is within 0.5 ulp + 2 * 2**-24 * sum(|x|) of the exact sum
    (the rounding of the result plus the quads' error; NumPy's pairwise float32 sum is bounded
    by log2(n) * 2**-24 * sum(|x|)), and it is correctly rounded wherever the quads add
    exactly, as sums of numbers with few significant bits do. The slabs (``partial``, from
    ``_sum_partials``) do not depend on the shares, so both runs add the same terms in the
    same order.
    """
    O, R, I = x.shape
    slabs = _slab_count(x) if threads == 1 else partial.shape[1]
    if threads == 1 and slabs > 1:  # the serial run's own partials, when it needs them
        partial = _sum_partials(x, scale, out)
    if t < 0:
        each_share(threads)
    else:
        o0, o1 = share_range(t, threads, O * slabs)  # items: (outer, slab) pairs
        if I == 1:
            x2 = x.reshape(O, R)
            lanes = np.empty(LANES)  # one per share, not per row: rows may be short
            if slabs == 1:  # many rows, each summed straight into out
                for o in range(o0, o1):
                    out[o, 0] = sum_contiguous(x2[o], lanes) * scale
            else:
                for os in range(o0, o1):
                    o, s = os // slabs, os % slabs
                    v = x2[o, s * R // slabs : (s + 1) * R // slabs]
                    partial[o, s, 0] = sum_contiguous(v, lanes)
        else:
            acc = np.empty(I)
            for os in range(o0, o1):
                o, s = os // slabs, os % slabs
                total = acc if slabs == 1 else partial[o, s]
                total[:] = 0.0
                _sum_rows_into(x[o, s * R // slabs : (s + 1) * R // slabs], total)
                if slabs == 1:
                    orow = out[o]
                    for i in range(I):
                        orow[i] = total[i] * scale
        if threads > 1:
            return
    if slabs > 1:  # once, after every share: the slabs' sums, added in order
        for o in range(O):
            total = partial[o, 0]
            for s in range(1, slabs):
                prow = partial[o, s]
                for i in range(I):
                    total[i] += prow[i]
            orow = out[o]
            for i in range(I):
                orow[i] = total[i] * scale


@inline_helper
def _flat_partials(x, scale, out):
    """sum_flat's slab sums: the slabs that sum_forward cuts one row of x.size into."""
    # _slabs(1, n, 1, 1) spelled out: its min and max are two more functions to compile, for
    # the kernel that every full reduction (a loss) compiles first.
    return np.empty(1 if x.size < _SPLIT_MIN else _TASKS)


@partials_kernel(_flat_partials, EMPTY_1D)
def sum_flat(t, threads, partial, x, scale, out):
    """out[0] = scale * sum(x) over a flat ``x``: the full reduction (a loss, say). It cuts
    ``x`` into the slabs that ``sum_forward`` cuts one row into, so the two agree bit for bit,
    and it is cheaper to call and far cheaper to compile."""
    (n,) = x.shape  # flat only: another rank is a typing error, not a wild read
    (_,) = out.shape
    if threads == 1:
        partial = _flat_partials(x, scale, out)
    slabs = partial.size
    if t < 0:
        each_share(threads)
    else:
        s0, s1 = share_range(t, threads, slabs)
        lanes = np.empty(LANES)
        for s in range(s0, s1):
            partial[s] = sum_contiguous(x[s * n // slabs : (s + 1) * n // slabs], lanes)
        if threads > 1:
            return
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
    # One prange loop for both layouts, so that it compiles once for the serial and the
    # parallel run (sized_kernel cuts it into shares). A full sum's (or a last-axis sum's)
    # gradient, I == 1, is one value per outer index filled along R: written through (O, R), the
    # fill is a contiguous store that vectorizes; through dx[o, r] with I = 1 it ran one element
    # per loop trip, 20x slower.
    fill = dx.reshape(O, R * I)
    for o in range(O):  # nested, not a flat prange with // and % per row: rows may be short
        grow = grad[o]
        value = grow[0] * scale if I == 1 else 0.0
        for r in prange(R):
            if I == 1:
                fill[o, r] = value
            else:
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
        # The running maximum first: it streams the chunk in from memory while it computes,
        # and the NaN pass then reads it from L1 (in the other order the NaN pass waited on
        # memory alone and the maximum's compute followed, not overlapped).
        for i in range(chunk.size):
            m = _maxnum_no_nan(m, chunk[i])
        # Its two halves side by side: LLVM folds the pair of self-compares into one
        # unordered compare of the two, half the compares; the last element covers an odd count.
        h = chunk.size // 2
        first, second = chunk[:h], chunk[h : 2 * h]
        nan = chunk[-1] != chunk[-1]
        for i in range(h):
            nan |= (first[i] != first[i]) | (second[i] != second[i])
        if nan:
            return v.dtype.type(np.nan)
    return m


@inline_helper
def _max_of_rows(x, acc):
    """acc[i] = max_r x[r, i] for a non-empty (rows, I) block: its first row copied by a loop
    (`acc[:] = x[0]` compiles Numba's formatted shape-mismatch message), then the rest."""
    first = x[0]
    for i in range(acc.size):
        acc[i] = first[i]
    _max_rows_into(x[1:], acc)


@inline_helper
def _max_rows_into(x, acc):
    """acc[i] = max(acc[i], max_r x[r, i]) for a (rows, I) block."""
    R, I = x.shape
    for r in range(R):
        xr = x[r]
        for i in range(I):
            acc[i] = _maximum(acc[i], xr[i])


@inline_helper
def _max_partials(x, out):
    """max_forward's partial maxima, (outer, slabs, inner) in x's dtype: empty (outer 0) when
    each output takes one slab, which the share that owns it writes straight to out."""
    O, _, I = x.shape
    slabs = _slab_count(x)
    return np.empty((O if slabs > 1 else 0, slabs, I), x.dtype)


@partials_kernel(_max_partials, lambda x, out: empty_3d(x.dtype))
def max_forward(t, threads, partial, x, out):
    """out[o, i] = max_r x[o, r, i]; any NaN among the reduced elements gives NaN, as np.max."""
    O, R, I = x.shape
    slabs = _slab_count(x) if threads == 1 else partial.shape[1]
    if threads == 1 and slabs > 1:  # the serial run's own partials, when it needs them
        partial = _max_partials(x, out)
    if t < 0:
        each_share(threads)
    else:
        o0, o1 = share_range(t, threads, O * slabs)  # items: (outer, slab) pairs
        if I == 1:
            x2 = x.reshape(O, R)
            if slabs == 1:  # many rows, each taken straight into out
                for o in range(o0, o1):
                    out[o, 0] = max_contiguous(x2[o])
            else:
                for os in range(o0, o1):
                    o, s = os // slabs, os % slabs
                    partial[o, s, 0] = max_contiguous(x2[o, s * R // slabs : (s + 1) * R // slabs])
        else:
            for os in range(o0, o1):
                o, s = os // slabs, os % slabs
                r0, r1 = s * R // slabs, (s + 1) * R // slabs
                # Each slab starts from its first row; one slab is the whole reduction, in out.
                _max_of_rows(x[o, r0:r1], out[o] if slabs == 1 else partial[o, s])
        if threads > 1:
            return
    if slabs > 1:  # once, after every share
        for o in range(O):
            orow = out[o]
            if I == 1:
                orow[0] = max_contiguous(partial.reshape(O, slabs)[o])
            else:
                _max_of_rows(partial[o], orow)


@inline_helper
def _share_of_each_maximum(grad, ties):
    """ties[o, 0, i] = grad[o, i] / (the maxima counted in every slab of output (o, i))."""
    O, slabs, I = ties.shape
    for o in range(O):
        for i in range(I):
            count = 0.0
            for s in range(slabs):
                count += ties[o, s, i]
            ties[o, 0, i] = grad[o, i] / count


@inline_helper
def _max_ties(grad, x, out, dx):
    """max_backward's work, flat float64: a flag, 1 while the shares write the gradient (their
    second pass), then the maxima counted per (outer, slab, inner)."""
    O, _, I = x.shape
    return np.zeros(1 + O * _slab_count(x) * I)


@partials_kernel(_max_ties, EMPTY_1D)
def max_backward(t, threads, work, grad, x, out, dx):
    """Sends grad to the maximal elements, split evenly among ties (as torch.amax does).

    Where the maximum is NaN nothing equals it, and the whole gradient is zero. Two passes over
    the (outer, slab) items: one counts the maxima, one writes the gradient; between them the
    counts of each output are added in order, once, into its share of the gradient.
    """
    O, R, I = x.shape
    if threads == 1:
        work = _max_ties(grad, x, out, dx)
    slabs = (work.size - 1) // (O * I) if O * I > 0 else 1
    ties, second_pass = work[1:].reshape((O, slabs, I)), work[:1]
    if t < 0:
        each_share(threads)
        _share_of_each_maximum(grad, ties)
        second_pass[0] = 1
        each_share(threads)
        return
    o0, o1 = share_range(t, threads, O * slabs)
    x2, dx2 = x.reshape(O, R * I), dx.reshape(O, R * I)  # used when I == 1: rows
    if second_pass[0] == 0:
        for os in range(o0, o1):
            o, s = os // slabs, os % slabs
            if I == 1:
                m = out[o, 0]
                count = 0.0
                for r in range(s * R // slabs, (s + 1) * R // slabs):
                    count += x2[o, r] == m
                ties[o, s, 0] = count
            else:
                orow, trow = out[o], ties[o, s]
                for r in range(s * R // slabs, (s + 1) * R // slabs):
                    xr = x[o, r]
                    for i in range(I):
                        trow[i] += xr[i] == orow[i]
        if threads > 1:
            return
        _share_of_each_maximum(grad, ties)
    for os in range(o0, o1):
        o, s = os // slabs, os % slabs
        if I == 1:
            m, g = out[o, 0], ties[o, 0, 0]
            for r in range(s * R // slabs, (s + 1) * R // slabs):
                dx2[o, r] = g if x2[o, r] == m else 0.0
        else:
            orow, srow = out[o], ties[o, 0]
            for r in range(s * R // slabs, (s + 1) * R // slabs):
                xr, drow = x[o, r], dx[o, r]
                for i in range(I):
                    drow[i] = srow[i] if xr[i] == orow[i] else 0.0
