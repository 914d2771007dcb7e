"""Kernels of ``extra_clamp``, the op written in full: flat (1-D) contiguous arrays in, scalar
parameters, a preallocated output last.

``memory_bound`` compiles each prange loop twice (serially, and in parallel) and picks the
build by size; like every firefly kernel they are ``njit(cache=True, error_model="numpy")`` and
compile on first call, not at import.
"""

from numba import prange

from firefly.kernels import memory_bound


@memory_bound
def clamp_forward(x, low, high, out):
    for i in prange(x.size):
        v = x[i]
        # Compared, not min/max: NaN fails both tests and passes through, as in torch.clamp.
        out[i] = low if v < low else (high if v > high else v)


@memory_bound
def clamp_backward(grad, x, low, high, dx):
    for i in prange(grad.size):
        v = x[i]
        dx[i] = grad[i] if low <= v <= high else 0.0
