"""Kernel families: one loop per access pattern, specialised per op from its scalar math.

An op brings only scalar functions (plain Python, or compiled with ``firefly.kernels.scalar``);
a family copies its template loop with those functions bound in (``_jit.specialise``) and
compiles the copy serially and in parallel, the build chosen by size (``memory_bound`` or
``transcendental``). Nothing compiles at import: each kernel compiles on its first call, and
is cached on disk under a file name of its own. Numba inlines the scalar functions into the
loop before LLVM sees it, so a specialised kernel is the loop one would write by hand, and
vectorizes whenever the scalar math does (``firefly.kernels.vmath`` has exp, log, log1p,
sigmoid and tanh in a form that does).

Families, and the scalar functions each one takes:

- ``unary_map(name, forward)``: ``out[i] = forward(x[i])`` over flat arrays;
- ``unary_grad(name, backward)``: ``dx[i] = backward(grad[i], saved[i])``, where ``saved`` is
  the input or the output, whichever the derivative is cheaper from;
- ``broadcast_zip(name, forward)``: ``out = forward(a, b)`` with NumPy broadcasting, operands
  in the canonical 3-D form of ``firefly.ops.shapes.broadcast_operands``;
- ``broadcast_zip_grad(name, backward)``: ``da, db = backward(grad, a, b, out)`` elementwise in
  one pass, both gradients output-shaped (summing them back to the inputs' shapes is the
  separate un-broadcast step);
- ``row_softmax(name, row_constant, finish)`` and ``row_softmax_grad(name, term, finish)``:
  softmax-like maps along the middle axis of an (outer, axis, inner) array.

This module is the only place that knows how a loop is compiled for the CPU; a GPU family set
would offer the same functions (see docs/architecture.md).
"""
import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import memory_bound, specialise, transcendental
from firefly.kernels.reduce import LANES, max_contiguous, sum_contiguous

COSTS = {"memory": memory_bound, "transcendental": transcendental}


def _build(template, name, cost, **functions):
    try:
        sized = COSTS[cost]
    except KeyError:
        raise ValueError(f"kernel {name!r}: cost must be one of {sorted(COSTS)}, got {cost!r}") from None
    return sized(specialise(template, name, **functions))


def _placeholder(*args):
    raise TypeError("a kernel family template runs only as a specialised copy")


# Names that each template reads and specialise() binds to the op's scalar functions.
FORWARD = BACKWARD = ROW_CONSTANT = TERM = FINISH = _placeholder


# ----------------------------------------------------------------------------- unary
def _unary_map(x, out):
    for i in prange(x.size):
        out[i] = FORWARD(x[i])


def _unary_grad(grad, saved, dx):
    for i in prange(grad.size):
        dx[i] = BACKWARD(grad[i], saved[i])


def unary_map(name, forward, cost="memory"):
    """``kernel(x, out)``: out[i] = forward(x[i]) over flat contiguous arrays."""
    return _build(_unary_map, name, cost, FORWARD=forward)


def unary_grad(name, backward, cost="memory"):
    """``kernel(grad, saved, dx)``: dx[i] = backward(grad[i], saved[i]) over flat arrays."""
    return _build(_unary_grad, name, cost, BACKWARD=backward)


# ----------------------------------------------------------------------------- broadcast binary
# Operands are (outer, middle, inner) with each dimension either the output's size or 1.
# Equal shapes take a flat loop, which LLVM vectorizes. Otherwise `a0 = a.shape[0] > 1` is 1
# where a spans the dimension and 0 where it is broadcast, so `o * a0` indexes both cases
# without a branch in the inner loop. Rows are views indexed from 0, which lets LLVM drop
# Numba's negative-index checks and vectorize; the loops are nested rather than one flat
# prange with `//` and `%`, whose integer division per row costs more than a short row's
# arithmetic. The middle dimension is the parallel one: the outer is 1 unless three
# broadcast runs alternate.
def _broadcast_zip(a, b, out):
    af = a.reshape(-1)
    bf = b.reshape(-1)
    of = out.reshape(-1)
    if af.size == of.size and bf.size == of.size:
        for i in prange(of.size):
            of[i] = FORWARD(af[i], bf[i])
        return
    O, M, I = out.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            orow = out[o, m]
            for i in range(I):
                orow[i] = FORWARD(ar[i * a2], br[i * b2])


def _broadcast_zip_grad(grad, a, b, out, da, db):
    # One assignment per view: Numba 0.68's parfor pass miscompiled a flat loop like the one
    # below (wrong values) when its views came from a single tuple assignment.
    g = grad.reshape(-1)
    af = a.reshape(-1)
    bf = b.reshape(-1)
    of = out.reshape(-1)
    daf = da.reshape(-1)
    dbf = db.reshape(-1)
    if af.size == g.size and bf.size == g.size:
        for i in prange(g.size):
            ga, gb = BACKWARD(g[i], af[i], bf[i], of[i])
            daf[i] = ga
            dbf[i] = gb
        return
    O, M, I = grad.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            gr = grad[o, m]
            orow = out[o, m]
            dar = da[o, m]
            dbr = db[o, m]
            for i in range(I):
                ga, gb = BACKWARD(gr[i], ar[i * a2], br[i * b2], orow[i])
                dar[i] = ga
                dbr[i] = gb


def broadcast_zip(name, forward, cost="memory"):
    """``kernel(a, b, out)``: out = forward(a, b) elementwise, operands broadcast in 3-D form."""
    return _build(_broadcast_zip, name, cost, FORWARD=forward)


def broadcast_zip_grad(name, backward, cost="memory"):
    """``kernel(grad, a, b, out, da, db)``: (da, db) = backward(grad, a, b, out) elementwise.

    grad, out, da and db have the output's 3-D shape; a and b their broadcast 3-D forms. An op
    whose derivative does not read ``out`` may pass ``grad`` in its place.
    """
    return _build(_broadcast_zip_grad, name, cost, BACKWARD=backward)


# ----------------------------------------------------------------------------- softmax-like rows
# Arrays are (outer, axis, inner), mapped along the axis. When the axis is the last one
# (inner == 1, the usual case) each row is contiguous, and row sums and maxima use the
# reductions' multi-accumulator helpers; other axes walk strided rows. Every row is non-empty
# (ops skip empty arrays).
def _row_softmax(x, out):
    O, R, I = x.shape
    if I == 1:
        x2 = x.reshape(O, R)
        out2 = out.reshape(O, R)
        for o in prange(O):
            row, orow = x2[o], out2[o]
            m = max_contiguous(row)
            for r in range(R):
                orow[r] = vmath.exp(row[r] - m)  # shifted by the max, so exp never overflows
            c = ROW_CONSTANT(m, sum_contiguous(orow, np.empty(LANES)))
            for r in range(R):
                orow[r] = FINISH(row[r], orow[r], m, c)
        return
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        m = x[o, 0, i]
        for r in range(1, R):
            m = max(m, x[o, r, i])
        s = 0.0
        for r in range(R):
            e = vmath.exp(x[o, r, i] - m)
            out[o, r, i] = e
            s += e
        c = ROW_CONSTANT(m, s)
        for r in range(R):
            out[o, r, i] = FINISH(x[o, r, i], out[o, r, i], m, c)


def _row_softmax_grad(grad, out, dx):
    O, R, I = out.shape
    if I == 1:
        g2 = grad.reshape(O, R)
        out2 = out.reshape(O, R)
        dx2 = dx.reshape(O, R)
        for o in prange(O):
            grow, orow, drow = g2[o], out2[o], dx2[o]
            for r in range(R):
                drow[r] = TERM(grow[r], orow[r])
            total = sum_contiguous(drow, np.empty(LANES))
            for r in range(R):
                drow[r] = FINISH(grow[r], orow[r], total)
        return
    for oi in prange(O * I):
        o, i = oi // I, oi % I
        total = 0.0
        for r in range(R):
            total += TERM(grad[o, r, i], out[o, r, i])
        for r in range(R):
            dx[o, r, i] = FINISH(grad[o, r, i], out[o, r, i], total)


def row_softmax(name, row_constant, finish, cost="transcendental"):
    """``kernel(x, out)`` along the middle axis: with m = max(row) and s = sum(exp(row - m)),
    c = row_constant(m, s) per row, then out[r] = finish(x[r], exp(x[r] - m), m, c)."""
    return _build(_row_softmax, name, cost, ROW_CONSTANT=row_constant, FINISH=finish)


def row_softmax_grad(name, term, finish, cost="memory"):
    """``kernel(grad, out, dx)`` along the middle axis: total = sum(term(g[r], y[r])) per row,
    then dx[r] = finish(g[r], y[r], total)."""
    return _build(_row_softmax_grad, name, cost, TERM=term, FINISH=finish)
