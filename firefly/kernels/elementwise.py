"""Elementwise kernels.

Unary kernels take flat (1-D) contiguous arrays. exp, log, sigmoid and tanh compute with
``firefly.kernels.vmath``, which uses ``out`` as scratch: their ``out`` must not overlap ``x``.

Binary kernels take their operands in the canonical 3-D broadcast form made by
``firefly.ops.broadcast.broadcast_operands``: every array is (outer, middle, inner) with each
dimension either the output's size or 1. Equal shapes take a flat loop, which LLVM vectorizes;
broadcast operands are read with a 0 stride.

Binary backward kernels write full-size gradients; summing them back to each input's shape
is the one shared un-broadcast step (``firefly.ops.broadcast.reduce_to_shape``).
"""
import numpy as np
from numba import prange

from firefly.kernels import vmath
from firefly.kernels._jit import memory_bound, transcendental

# Elements per prange iteration of the kernels built on vmath: enough to amortize a call's setup
# (log allocates a scratch block), few enough that 1e5 elements split evenly over the threads.
VMATH_CHUNK = 8 * vmath.BLOCK


# ----------------------------------------------------------------------------- unary
@memory_bound
def neg_forward(x, out):
    for i in prange(x.size):
        out[i] = -x[i]


@memory_bound
def relu_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0.0 if v <= 0.0 else v  # NaN fails the test and propagates, as np.maximum(x, 0)


@memory_bound
def relu_backward(grad, x, dx):
    for i in prange(grad.size):
        dx[i] = grad[i] if x[i] > 0.0 else 0.0


@transcendental
def exp_forward(x, out):
    for c in prange((x.size + VMATH_CHUNK - 1) // VMATH_CHUNK):
        chunk = slice(c * VMATH_CHUNK, (c + 1) * VMATH_CHUNK)
        vmath.exp(x[chunk], out[chunk])


@memory_bound
def mul_saved_backward(grad, saved, dx):
    """dx = grad * saved: the backward of exp (saved = its output)."""
    for i in prange(grad.size):
        dx[i] = grad[i] * saved[i]


@transcendental
def log_forward(x, out):
    for c in prange((x.size + VMATH_CHUNK - 1) // VMATH_CHUNK):
        chunk = slice(c * VMATH_CHUNK, (c + 1) * VMATH_CHUNK)
        vmath.log(x[chunk], out[chunk])


@memory_bound
def log_backward(grad, x, dx):
    for i in prange(grad.size):
        dx[i] = grad[i] / x[i]


@transcendental
def sigmoid_forward(x, out):
    for c in prange((x.size + VMATH_CHUNK - 1) // VMATH_CHUNK):
        chunk = slice(c * VMATH_CHUNK, (c + 1) * VMATH_CHUNK)
        vmath.sigmoid(x[chunk], out[chunk])


@memory_bound
def sigmoid_backward(grad, out, dx):
    for i in prange(grad.size):
        s = out[i]
        dx[i] = grad[i] * s * (1.0 - s)


@transcendental
def tanh_forward(x, out):
    for c in prange((x.size + VMATH_CHUNK - 1) // VMATH_CHUNK):
        chunk = slice(c * VMATH_CHUNK, (c + 1) * VMATH_CHUNK)
        vmath.tanh(x[chunk], out[chunk])


@memory_bound
def tanh_backward(grad, out, dx):
    for i in prange(grad.size):
        t = out[i]
        dx[i] = grad[i] * (1.0 - t * t)


# ----------------------------------------------------------------------------- binary
# Each binary op spells out the same loop around its own arithmetic. Passing the arithmetic in
# as a jitted function instead made Numba dispatch on the function object (8 us per call,
# measured) and defeated the on-disk cache, so the repetition is the price of speed here.
#
# In the broadcast loops, `a0 = a.shape[0] > 1` is 1 where a spans the dimension and 0 where
# it is broadcast, so `o * a0` indexes both cases without a branch in the inner loop. Rows are
# views indexed from 0, which lets LLVM drop Numba's negative-index checks and vectorize; the
# loops are nested rather than one flat prange with `//` and `%`, whose integer division per
# row costs more than a short row's arithmetic. The middle dimension is the parallel one: the
# outer is 1 unless three broadcast runs alternate.


@memory_bound
def add_forward(a, b, out):
    af = a.reshape(-1)
    bf = b.reshape(-1)
    of = out.reshape(-1)
    if af.size == of.size and bf.size == of.size:
        for i in prange(of.size):
            of[i] = af[i] + bf[i]
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
                orow[i] = ar[i * a2] + br[i * b2]


@memory_bound
def sub_forward(a, b, out):
    af = a.reshape(-1)
    bf = b.reshape(-1)
    of = out.reshape(-1)
    if af.size == of.size and bf.size == of.size:
        for i in prange(of.size):
            of[i] = af[i] - bf[i]
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
                orow[i] = ar[i * a2] - br[i * b2]


@memory_bound
def mul_forward(a, b, out):
    af = a.reshape(-1)
    bf = b.reshape(-1)
    of = out.reshape(-1)
    if af.size == of.size and bf.size == of.size:
        for i in prange(of.size):
            of[i] = af[i] * bf[i]
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
                orow[i] = ar[i * a2] * br[i * b2]


@memory_bound
def div_forward(a, b, out):
    af = a.reshape(-1)
    bf = b.reshape(-1)
    of = out.reshape(-1)
    if af.size == of.size and bf.size == of.size:
        for i in prange(of.size):
            of[i] = af[i] / bf[i]
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
                orow[i] = ar[i * a2] / br[i * b2]


@transcendental
def pow_forward(a, b, out):
    O, M, I = out.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            orow = out[o, m]
            for i in range(I):
                orow[i] = ar[i * a2] ** br[i * b2]


@memory_bound
def mul_backward(grad, a, b, da, db):
    """da = grad * b and db = grad * a in one pass; da and db have the output's shape."""
    # One assignment per view: Numba 0.68's parfor pass miscompiled the flat loop below (wrong
    # values) when its views came from a single tuple assignment.
    g = grad.reshape(-1)
    af = a.reshape(-1)
    bf = b.reshape(-1)
    daf = da.reshape(-1)
    dbf = db.reshape(-1)
    if af.size == g.size and bf.size == g.size:
        for i in prange(g.size):
            gi = g[i]
            daf[i] = gi * bf[i]
            dbf[i] = gi * af[i]
        return
    O, M, I = grad.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            gr = grad[o, m]
            dar = da[o, m]
            dbr = db[o, m]
            for i in range(I):
                gi = gr[i]
                dar[i] = gi * br[i * b2]
                dbr[i] = gi * ar[i * a2]


@memory_bound
def div_backward(grad, a, b, da, db):
    """da = grad / b and db = -grad * a / b**2 in one pass; da and db have the output's shape."""
    O, M, I = grad.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            gr = grad[o, m]
            dar = da[o, m]
            dbr = db[o, m]
            for i in range(I):
                bi = br[i * b2]
                q = gr[i] / bi
                dar[i] = q
                dbr[i] = -q * ar[i * a2] / bi


@transcendental
def pow_backward(grad, a, b, out, da, db):
    """da = grad * b * a**(b-1) and db = grad * a**b * log(a) in one pass.

    db is 0 where a == 0 (the limit of a**b * log(a) for b > 0), as in PyTorch.
    """
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
                ai, bi, gi = ar[i * a2], br[i * b2], gr[i]
                dar[i] = gi * bi * ai ** (bi - 1.0) if bi != 0.0 else 0.0 * gi
                dbr[i] = gi * orow[i] * np.log(ai) if ai != 0.0 else 0.0 * gi
