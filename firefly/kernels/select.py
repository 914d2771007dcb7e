"""Kernels of the selecting ops that are not plain elementwise maps: clamp (its bounds are
arguments), where, take (the value move of integer-array, mask and gather indexing) and the
block copies of cat. abs, sqrt, sign, maximum and minimum are scalar math on the kernel
families (``firefly.ops.select``).

Arrays are flat and contiguous unless a docstring says (outer, middle, inner); indices are
int64 and already checked by the ops (no bounds checks here).
"""

from numba import prange

from firefly.kernels._jit import kernel, memory_bound


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
    """out[i] = src[index[i]]."""
    for i in prange(out.size):
        out[i] = src[index[i]]


@kernel  # serial: repeated indices add into the same element
def take_backward(grad, index, dx):
    """dx[index[i]] += grad[i]: repeated indices accumulate."""
    for i in range(grad.size):
        dx[index[i]] += grad[i]


@memory_bound
def copy_into_block(src, offset, dst):
    """dst[o, offset + m, i] = src[o, m, i] over (outer, middle, inner): a piece of a
    concatenation."""
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
