"""Kernel families: one loop per access pattern, specialised per op from its scalar math.

An op brings only scalar functions (plain Python, or compiled with ``firefly.kernels.scalar``);
a family copies its template loop with those functions bound in (``_jit.specialise``) and
compiles the copy once, run on one thread or in shares on all of them as its size chooses
(``_jit.sized_kernel``, with ``memory_bound``'s or ``transcendental``'s threshold).
Nothing compiles at import: each kernel compiles on its first call, and is cached on disk
under a file name of its own. Numba inlines the scalar functions into the loop before LLVM
sees it, so a specialised kernel is the loop one would write by hand, and vectorizes
whenever the scalar math does (``firefly.kernels.vmath`` has exp, log, log1p, sigmoid and
tanh in a form that does).

Families, and the scalar functions each one takes:

- ``unary_map(name, forward)``: ``out[i] = forward(x[i])`` over flat arrays;
- ``unary_grad(name, backward)``: ``dx[i] = backward(grad[i], saved[i])``, where ``saved`` is
  the input or the output, whichever the derivative is cheaper from;
- ``flat_zip(name, forward)``: ``out[i] = forward(a[i], b[i])`` over flat arrays, either
  operand possibly a single element (equal shapes, or a scalar: the common cases);
- ``flat_zip_grad(name, backward)``: ``da, db = backward(grad, a, b, out)`` elementwise in one
  pass over flat arrays, both gradients output-sized (summing them back to the inputs' shapes
  is the separate un-broadcast step), ``out`` read from ``db`` where the op filled it;
- ``broadcast_zip(name, forward)`` and ``broadcast_zip_grad(name, backward)``: the same with
  NumPy broadcasting, operands in the canonical 3-D form of
  ``firefly.ops.shapes.broadcast_operands``;
- ``row_softmax(name, row_constant, finish)`` and ``row_softmax_grad(name, row_term, finish)``:
  softmax-like maps along the middle axis of an (outer, axis, inner) array.

This module is the only place that knows how a loop is compiled for the CPU; a GPU family set
would offer the same functions (see docs/architecture.md).
"""

import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import COSTS as COSTS  # re-exported: ops.families checks costs by it
from firefly.kernels._jit import build_specialised as _build
from firefly.kernels._jit import called_helper, inline_helper
from firefly.kernels._jit import specialise as _specialise
from firefly.kernels.reduce import LANES, SUM_CHUNK


def _placeholder(*args):
    raise TypeError("a kernel family template runs only as a specialised copy")


# Names that each template reads and specialise() binds to the op's scalar functions.
FORWARD = BACKWARD = ROW_CONSTANT = ROW_TERM = ROW_SUM = FINISH = SERIAL = _placeholder


# ----------------------------------------------------------------------------- unary
# The flat templates unpack their arrays' shapes as 1-tuples: an array of another rank is then
# a typing error when the kernel compiles, never a loop that indexes past its end.
def _unary_map(x, out):
    (n,) = x.shape
    (_,) = out.shape
    for i in prange(n):
        out[i] = FORWARD(x[i])


def _unary_grad(grad, saved, dx):
    (n,) = grad.shape
    (_,) = saved.shape
    (_,) = dx.shape
    for i in prange(n):
        dx[i] = BACKWARD(grad[i], saved[i])


def unary_map(name, forward, cost="memory"):
    """``kernel(x, out)``: out[i] = forward(x[i]) over flat contiguous arrays."""
    return _build(_unary_map, name, cost, FORWARD=forward)


def unary_grad(name, backward, cost="memory"):
    """``kernel(grad, saved, dx)``: dx[i] = backward(grad[i], saved[i]) over flat arrays."""
    return _build(_unary_grad, name, cost, BACKWARD=backward)


# ----------------------------------------------------------------------------- flat binary
# The common cases, equal shapes or one single-element operand, run on flat arrays: cheaper to
# call than the 3-D broadcast form (one reshape-free view per argument, fewer dimensions for
# the dispatcher to type) and cheaper to compile. A single element is read with a stride of 0,
# in one loop for both cases: two inlined copies of the scalar function with a conditional
# between them trip Numba's SSA checks.
@inline_helper
def _operand_strides(a, b):
    """(stride of a, stride of b): 1 for a flat operand, 0 for a single element read at every i."""
    (na,) = a.shape
    (nb,) = b.shape
    return (1 if na > 1 else 0), (1 if nb > 1 else 0)


def _flat_zip(a, b, out):
    sa, sb = _operand_strides(a, b)
    (n,) = out.shape
    for i in prange(n):
        out[i] = FORWARD(a[i * sa], b[i * sb])


def _flat_zip_grad(grad, a, b, da, db):
    sa, sb = _operand_strides(a, b)
    (n,) = grad.shape
    (_,) = da.shape
    (_,) = db.shape
    for i in prange(n):
        # db holds the forward's output until this element's gradient replaces it.
        ga, gb = BACKWARD(grad[i], a[i * sa], b[i * sb], db[i])
        da[i] = ga
        db[i] = gb


def flat_zip(name, forward, cost="memory"):
    """``kernel(a, b, out)``: out[i] = forward(a[i], b[i]) over flat arrays; a or b may hold
    a single element, read for every i."""
    return _build(_flat_zip, name, cost, FORWARD=forward)


def flat_zip_grad(name, backward, cost="memory"):
    """``kernel(grad, a, b, da, db)``: (da[i], db[i]) = backward(grad[i], a[i], b[i], out[i])
    over flat arrays, a or b possibly a single element; out is read from db as in
    ``broadcast_zip_grad``."""
    return _build(_flat_zip_grad, name, cost, BACKWARD=backward)


# ----------------------------------------------------------------------------- broadcast binary
# Operands are (outer, middle, inner) with each dimension either the output's size or 1, and
# at least one operand broadcasts along some dimension (the flat kernels take the other
# cases). The loops go over the output's (outer, middle) rows, where a stride of 0 reads a
# broadcast operand (`o * a0` is o where a spans the dimension and 0 where it is broadcast,
# without a branch in the inner loop). Rows are views indexed from 0, which lets LLVM drop
# Numba's negative-index checks, and LLVM versions the inner loop for unit strides, which
# vectorizes. Rows, not one flat prange with `//` and `%` per element: the integer division
# costs more than a short row's arithmetic. The outer dimension is 1 unless three broadcast
# runs alternate.
def _broadcast_zip(a, b, out):
    O, M, I = out.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    sa = 1 if a2 else 0
    sb = 1 if b2 else 0
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            orow = out[o, m]
            for i in range(I):
                orow[i] = FORWARD(ar[i * sa], br[i * sb])


def _broadcast_zip_grad(grad, a, b, da, db):
    O, M, I = grad.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    sa = 1 if a2 else 0
    sb = 1 if b2 else 0
    for o in range(O):
        for m in prange(M):
            gr = grad[o, m]
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            dar = da[o, m]
            dbr = db[o, m]
            for i in range(I):
                # db holds the forward's output until this element's gradient replaces it.
                ga, gb = BACKWARD(gr[i], ar[i * sa], br[i * sb], dbr[i])
                dar[i] = ga
                dbr[i] = gb


def broadcast_zip(name, forward, cost="memory"):
    """``kernel(a, b, out)``: out = forward(a, b) elementwise, operands broadcast in 3-D form."""
    return _build(_broadcast_zip, name, cost, FORWARD=forward)


def broadcast_zip_grad(name, backward, cost="memory"):
    """``kernel(grad, a, b, da, db)``: (da, db) = backward(grad, a, b, out) elementwise.

    grad, da and db have the output's 3-D shape; a and b their broadcast 3-D forms. ``out``,
    the forward's output, is read from db, which the caller fills with it beforehand when the
    derivative needs it: an array argument fewer makes the kernel cheaper to call, and the
    extra copy matters only for such derivatives (pow's), which are costly anyway. When db is
    not filled, backward must ignore its fourth argument.
    """
    return _build(_broadcast_zip_grad, name, cost, BACKWARD=backward)


# ----------------------------------------------------------------------------- softmax-like rows
# Arrays are (outer, axis, inner), mapped along the axis, one row per (outer, inner) pair. When
# the axis is the last one (inner == 1, the usual case) each row is contiguous. Other axes copy
# each strided row into a contiguous scratch row and back, so that one loop serves both: each
# scalar function then appears once in the kernel, as Numba's inliner needs (two inlined copies
# of one function with a conditional trip its SSA checks). Every row is non-empty (ops skip
# empty arrays).
#
# Each pass goes over a row that stays in L1. The forward takes the max, writes exp(x - m),
# sums what it wrote, then finishes. The row sums (the forward's sum of exp(x - m), the
# backward's sum of its row terms, g * y or g) are called helpers that LLVM may reassociate,
# each over SUM_CHUNK elements in the row's dtype, added into a float64 total
# (firefly.kernels.reduce.sum_chunked explains the accuracy): they vectorize into register
# partial sums. Sums in lanes in memory cost a reset and a combine per row, a fifth of
# softmax's backward at rows of 1000; fused into the exp loop, they cost that loop more than a
# second pass over the row in L1 costs. The exp itself stays outside any reassociated code: its
# range reduction depends on the order of its float operations. The row constant is rounded
# to the row's dtype so that the finishing pass runs at the dtype's vector width too. The
# backward sums its row terms as it reads them, then finishes: two passes, where writing the
# terms out and summing them took three. Rows are dealt to at most ROW_TASKS tasks, each with
# its scratch (max lanes, strided-row copies) allocated once, not once per row.
ROW_TASKS = 16


@inline_helper
def _softmax_row_max(v, lanes):
    """max(v) for a contiguous, non-empty row, as the softmax family needs it: compare and
    select in ``lanes`` (LANES scratch of v's dtype), quads of four elements first, so that
    the loop vectorizes and the lanes are updated once per 4 * LANES elements (max_contiguous's
    NaN-propagating llvm.maximum took 155 us of a 1000x1000 forward, this 4-5x less).

    NaN-blind: a NaN element may be skipped, but it still reaches every output of its row
    through exp(x - m) and the row's sum, so the results are those of a NaN-propagating max.
    """
    n = v.size
    W = LANES
    lanes[:] = v[0]  # any element of the row is a valid start
    b = 0
    while b + 4 * W <= n:
        block = v[b : b + 4 * W]  # views indexed from 0, so that the loops vectorize
        for k in range(W):
            a0, a1 = block[k], block[W + k]
            a2, a3 = block[2 * W + k], block[3 * W + k]
            m01 = a0 if a0 > a1 else a1
            m23 = a2 if a2 > a3 else a3
            m = m01 if m01 > m23 else m23
            lanes[k] = m if m > lanes[k] else lanes[k]
        b += 4 * W
    while b < n:
        block = v[b : min(b + W, n)]
        for k in range(block.size):
            lanes[k] = block[k] if block[k] > lanes[k] else lanes[k]
        b += W
    half = W // 2
    while half >= 1:
        for k in range(half):
            lanes[k] = lanes[half + k] if lanes[half + k] > lanes[k] else lanes[k]
        half //= 2
    return lanes[0]


def _row_softmax(x, out):
    O, R, I = x.shape
    x2 = x.reshape(O, R * I)
    out2 = out.reshape(O, R * I)
    rows = O * I
    tasks = min(rows, ROW_TASKS)
    for t in prange(tasks):
        max_lanes = np.empty(LANES, x.dtype)
        scratch = R if I != 1 else 0
        row_copy, out_copy = np.empty(scratch, x.dtype), np.empty(scratch, x.dtype)
        for oi in range(t * rows // tasks, (t + 1) * rows // tasks):
            o, i = oi // I, oi % I
            if I == 1:
                row, orow = x2[o], out2[o]
            else:
                row, orow = row_copy, out_copy
                for r in range(R):
                    row[r] = x[o, r, i]
            m = _softmax_row_max(row, max_lanes)
            for r in range(R):
                # Shifted by the max: exp never overflows, and terms below 2**-126 of
                # the largest one flush to 0 (the cheaper exp: vmath.exp_flush_subnormal).
                orow[r] = vmath.exp_flush_subnormal(row[r] - m)
            total = 0.0
            for lo in range(0, R, SUM_CHUNK):
                total += _reassociated_sum(orow[lo : min(lo + SUM_CHUNK, R)])
            c = vmath.like(ROW_CONSTANT(m, total), m)
            for r in range(R):
                orow[r] = FINISH(row[r], orow[r], m, c)
            if I != 1:
                for r in range(R):
                    out[o, r, i] = orow[r]


@called_helper(reassociate=True)
def _reassociated_sum(v):
    """sum(v) over a contiguous chunk, in the dtype, in any order."""
    total = v.dtype.type(0)
    for r in range(v.size):
        total += v[r]
    return total


def _row_term_sum(g, y):
    """sum(ROW_TERM(g[r], y[r])) over a contiguous row chunk, in the dtype; compiled as a
    called helper that LLVM may reassociate (row_softmax_grad)."""
    total = y.dtype.type(0)
    for r in range(y.size):
        total += ROW_TERM(g[r], y[r])
    return total


def _row_softmax_grad(grad, out, dx):
    O, R, I = out.shape
    g2 = grad.reshape(O, R * I)
    out2 = out.reshape(O, R * I)
    dx2 = dx.reshape(O, R * I)
    rows = O * I
    tasks = min(rows, ROW_TASKS)
    for t in prange(tasks):
        scratch = R if I != 1 else 0
        g_copy, out_copy, dx_copy = (
            np.empty(scratch, grad.dtype),
            np.empty(scratch, out.dtype),
            np.empty(scratch, dx.dtype),
        )
        for oi in range(t * rows // tasks, (t + 1) * rows // tasks):
            o, i = oi // I, oi % I
            if I == 1:
                grow, orow, drow = g2[o], out2[o], dx2[o]
            else:
                grow, orow, drow = g_copy, out_copy, dx_copy
                for r in range(R):
                    grow[r] = grad[o, r, i]
                    orow[r] = out[o, r, i]
            total = 0.0
            for lo in range(0, R, SUM_CHUNK):
                hi = min(lo + SUM_CHUNK, R)
                total += ROW_SUM(grow[lo:hi], orow[lo:hi])
            total_t = vmath.like(total, orow[0])
            for r in range(R):
                drow[r] = FINISH(grow[r], orow[r], total_t)
            if I != 1:
                for r in range(R):
                    dx[o, r, i] = drow[r]


def row_softmax(name, row_constant, finish, cost="transcendental"):
    """``kernel(x, out)`` along the middle axis: with m = max(row) and s = sum(exp(row - m)),
    c = row_constant(m, s) per row (s in float64, c rounded to the dtype), then
    out[r] = finish(x[r], exp(x[r] - m), m, c)."""
    return _build(_row_softmax, name, cost, ROW_CONSTANT=row_constant, FINISH=finish)


def row_softmax_grad(name, row_term, finish, cost="memory"):
    """``kernel(grad, out, dx)`` along the middle axis: total = sum(row_term(g[r], y[r])) per
    row, summed as the row is read (in the dtype, in any order: LLVM may reassociate the sum and
    row_term's own arithmetic, so row_term must not depend on the order of its float operations,
    as a product does not; chunks added in float64), then dx[r] = finish(g[r], y[r], total) with
    total in the dtype."""
    row_sum = called_helper(reassociate=True)(
        _specialise(_row_term_sum, name + "_row_sum", ROW_TERM=row_term)
    )
    return _build(_row_softmax_grad, name, cost, ROW_SUM=row_sum, FINISH=finish)
