"""Kernels of the activations with attributes, over flat arrays: GELU (exact and tanh), leaky
ReLU, ELU, softplus and hardtanh. Each backward reads the forward's input. Transcendental functions
run in float64 and round once into the output's dtype."""

import math

from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound, transcendental

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044715


@inline_helper
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@transcendental
def gelu_forward(x, tanh_approximation, out):
    """x * Phi(x), or torch's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    for i in prange(x.size):
        v = float(x[i])
        if tanh_approximation:
            out[i] = 0.5 * v * (1.0 + math.tanh(_SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)))
        else:
            out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))


@transcendental
def gelu_backward(grad, x, tanh_approximation, dx):
    for i in prange(x.size):
        v = float(x[i])
        if tanh_approximation:
            inner = _SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)
            t = math.tanh(inner)
            d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _SQRT_2_OVER_PI * (
                1.0 + 3.0 * _GELU_CUBIC * v * v
            )
        else:
            d = 0.5 * (1.0 + math.erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)
        dx[i] = grad[i] * d


@memory_bound
def leaky_relu_forward(x, negative_slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * negative_slope


@memory_bound
def leaky_relu_backward(grad, x, negative_slope, dx):
    for i in prange(x.size):
        dx[i] = grad[i] if x[i] > 0 else grad[i] * negative_slope


@transcendental
def elu_forward(x, alpha, out):
    for i in prange(x.size):
        v = float(x[i])
        out[i] = v if v > 0 else alpha * math.expm1(v)


@transcendental
def elu_backward(grad, x, alpha, dx):
    for i in prange(x.size):
        v = float(x[i])
        dx[i] = grad[i] if v > 0 else grad[i] * alpha * math.exp(v)


@transcendental
def softplus_forward(x, beta, threshold, out):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch's)."""
    for i in prange(x.size):
        v = float(x[i])
        z = beta * v
        out[i] = v if z > threshold else (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / beta


@transcendental
def softplus_backward(grad, x, beta, threshold, dx):
    for i in prange(x.size):
        z = beta * float(x[i])
        dx[i] = grad[i] if z > threshold else grad[i] * _sigmoid(z)


@memory_bound
def hardtanh_forward(x, min_val, max_val, out):
    for i in prange(x.size):
        out[i] = min(max(x[i], min_val), max_val)


@memory_bound
def hardtanh_backward(grad, x, min_val, max_val, dx):
    """The gradient passes strictly inside (min_val, max_val), as torch's."""
    for i in prange(x.size):
        v = x[i]
        dx[i] = grad[i] if min_val < v < max_val else 0.0
