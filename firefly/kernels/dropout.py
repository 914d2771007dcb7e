"""Dropout kernels: the op draws the uniforms from firefly's generator; these apply them."""

from numba import prange

from firefly.kernels._jit import memory_bound


@memory_bound
def dropout_forward(x, draws, p, scale, out):
    """out = x * scale where the uniform draw is at least p, else 0 (flat arrays)."""
    for i in prange(x.size):
        out[i] = x[i] * scale if draws[i] >= p else 0.0


@memory_bound
def dropout_backward(grad, draws, p, scale, dx):
    """dx = grad * scale where the forward kept the element, else 0."""
    for i in prange(grad.size):
        dx[i] = grad[i] * scale if draws[i] >= p else 0.0
