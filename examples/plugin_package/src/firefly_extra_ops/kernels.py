"""Numba kernels for the plugin's ops: flat (1-D) contiguous arrays in, a preallocated output.

``transcendental`` compiles each loop twice (serial, and parallel with ``prange``) and picks
by size; like every firefly kernel they are ``njit(cache=True, error_model="numpy")`` and
compile on first call, not at import. The arithmetic runs in float64 (the Python float
constants promote it) and is stored in the output's dtype.
"""
import math

import numpy as np
from numba import prange

from firefly.kernels import transcendental

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_COEF = 0.044715


@transcendental
def softplus_forward(x, beta, out):
    """out = log(1 + exp(beta * x)) / beta, as max(z, 0) + log1p(exp(-|z|)) so it never overflows."""
    for i in prange(x.size):
        z = beta * x[i]
        out[i] = (max(z, 0.0) + np.log1p(np.exp(-abs(z)))) / beta


@transcendental
def softplus_backward(grad, x, beta, dx):
    """dx = grad * sigmoid(beta * x), with the sigmoid split by sign so exp cannot overflow."""
    for i in prange(grad.size):
        z = beta * x[i]
        if z >= 0.0:
            s = 1.0 / (1.0 + np.exp(-z))
        else:
            e = np.exp(z)
            s = e / (1.0 + e)
        dx[i] = grad[i] * s


@transcendental
def gelu_forward(x, use_tanh, out):
    """out = x * Phi(x): the exact normal CDF through erf, or (use_tanh) the tanh approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    for i in prange(x.size):
        v = x[i]
        if use_tanh:
            out[i] = 0.5 * v * (1.0 + np.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_COEF * v * v * v)))
        else:
            out[i] = 0.5 * v * (1.0 + math.erf(v * INV_SQRT_2))


@transcendental
def gelu_backward(grad, x, use_tanh, dx):
    """dx = grad * d/dx [x Phi(x)] = grad * (Phi(x) + x phi(x)), or the tanh form's derivative."""
    for i in prange(grad.size):
        v = x[i]
        if use_tanh:
            t = np.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_COEF * v * v * v))
            du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEF * v * v)
            dx[i] = grad[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du)
        else:
            cdf = 0.5 * (1.0 + math.erf(v * INV_SQRT_2))
            pdf = INV_SQRT_2PI * np.exp(-0.5 * v * v)
            dx[i] = grad[i] * (cdf + v * pdf)
