"""Kernels of the selecting ops: abs, sqrt, sign, clamp, maximum, minimum, where, and the
index moves of take (integer-array, mask and gather indexing) and cat.

Unary kernels take flat contiguous arrays; maximum and minimum take the binary kernels'
canonical 3-D broadcast form (see ``firefly.kernels.elementwise``); indices are int64 and
already checked by the ops (no bounds checks here).
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import kernel, memory_bound


@memory_bound
def abs_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = -v if v < 0.0 else v


@memory_bound
def abs_backward(grad, x, dx):
    """dx = grad * sign(x): 0 at 0, as in PyTorch."""
    for i in prange(grad.size):
        v = x[i]
        dx[i] = grad[i] if v > 0.0 else (-grad[i] if v < 0.0 else 0.0 * grad[i])


@memory_bound
def sqrt_forward(x, out):
    for i in prange(x.size):
        out[i] = np.sqrt(x[i])


@memory_bound
def sqrt_backward(grad, out, dx):
    for i in prange(grad.size):
        dx[i] = grad[i] * 0.5 / out[i]


@memory_bound
def sign_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else v)  # 0 stays 0 and NaN stays NaN


@memory_bound
def zero_fill(out):
    """The gradient of sign: zero everywhere."""
    for i in prange(out.size):
        out[i] = 0.0


@memory_bound
def clamp_forward(x, low, high, out):
    """min(max(x, low), high), NaN passing through, as torch.clamp."""
    for i in prange(x.size):
        v = x[i]
        v = low if v < low else v
        out[i] = high if v > high else v


@memory_bound
def clamp_backward(grad, x, low, high, dx):
    """The gradient passes where low <= x <= high (both ends included, as in PyTorch)."""
    for i in prange(grad.size):
        v = x[i]
        dx[i] = grad[i] if (v >= low and v <= high) else 0.0


@memory_bound
def extreme_forward(a, b, sign, out):
    """maximum (sign 1) or minimum (sign -1) of 3-D broadcast operands; NaN propagates."""
    O, M, I = out.shape
    a0, a1, a2 = a.shape[0] > 1, a.shape[1] > 1, a.shape[2] > 1
    b0, b1, b2 = b.shape[0] > 1, b.shape[1] > 1, b.shape[2] > 1
    for o in range(O):
        for m in prange(M):
            ar = a[o * a0, m * a1]
            br = b[o * b0, m * b1]
            orow = out[o, m]
            for i in range(I):
                ai, bi = ar[i * a2], br[i * b2]
                orow[i] = ai if (sign * ai > sign * bi or ai != ai) else bi


@memory_bound
def extreme_backward(grad, a, b, sign, da, db):
    """The gradient goes to the larger (sign 1) or smaller (sign -1) operand, split evenly on a
    tie (PyTorch's rule); da and db have the output's shape."""
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
                sa, sb, g = sign * ar[i * a2], sign * br[i * b2], gr[i]
                if sa > sb:
                    dar[i], dbr[i] = g, 0.0 * g
                elif sa < sb:
                    dar[i], dbr[i] = 0.0 * g, g
                else:
                    dar[i], dbr[i] = 0.5 * g, 0.5 * g


@memory_bound
def where_forward(condition, a, b, out):
    """out = a where condition else b, on flat arrays of one size."""
    for i in prange(out.size):
        out[i] = a[i] if condition[i] else b[i]


@memory_bound
def where_backward(grad, condition, da, db):
    for i in prange(grad.size):
        g = grad[i]
        if condition[i]:
            da[i], db[i] = g, 0.0 * g
        else:
            da[i], db[i] = 0.0 * g, g


@memory_bound
def take_forward(src, index, out):
    """out[i] = src[index[i]] (flat arrays; every index already checked)."""
    for i in prange(out.size):
        out[i] = src[index[i]]


@kernel  # serial: repeated indices add into the same element
def take_backward(grad, index, dx):
    """dx[index[i]] += grad[i]: repeated indices accumulate."""
    for i in range(grad.size):
        dx[index[i]] += grad[i]


@memory_bound
def copy_into_block(src, offset, dst):
    """dst[o, offset + m, i] = src[o, m, i]: one piece of a concatenation."""
    O, M, I = src.shape
    for o in prange(O):
        for m in range(M):
            for i in range(I):
                dst[o, offset + m, i] = src[o, m, i]


@memory_bound
def copy_from_block(src, offset, dst):
    """dst[o, m, i] = src[o, offset + m, i]: a piece's gradient out of the concatenation's."""
    O, M, I = dst.shape
    for o in prange(O):
        for m in range(M):
            for i in range(I):
                dst[o, m, i] = src[o, offset + m, i]
