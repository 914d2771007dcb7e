"""Optimizer kernels: one fused pass over flat parameter, gradient and state buffers.

Each update kernel reads a parameter's gradient once, updates the optimizer state and the
parameter in place, and follows PyTorch's single-tensor implementation (where the
documentation and implementation differ, as for ``maximize`` with weight decay, the
implementation). Arguments: the gradient first and the parameter (or output) last
(``SizedKernel`` picks the serial or prange build from their sizes), everything else between.

The hyperparameters come as NumPy scalars of the buffers' dtype, so a float32 group computes
in float32 as PyTorch does: float64 arithmetic made a float32 Adam step 3x slower (its
square roots and divisions run at half the SIMD width). The optimizer computes every
step-dependent coefficient (bias corrections, 1 - beta) in Python floats first, so each is
rounded only once.

The gradient-clipping kernels (``grad_norm_power_sum``, ``grad_scale``, ``grad_clamp``) run
over the same flat gradient buffers; norms accumulate in float64 whatever the gradients'
dtype.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import memory_bound, transcendental


@memory_bound
def sgd_step(grad, lr, weight_decay, momentum, one_minus_dampening, nesterov, maximize,
             first_step, momentum_buffer, param):
    """SGD, with a momentum buffer when ``momentum`` is nonzero (``momentum_buffer`` is then
    read and written; it may be empty otherwise). On the buffer's first step it starts as the
    gradient itself (no dampening), as in PyTorch."""
    for i in prange(grad.size):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
        if momentum != 0.0:
            if first_step:
                b = g
            else:
                b = momentum * momentum_buffer[i] + one_minus_dampening * g
            momentum_buffer[i] = b
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        param[i] = p - lr * g


# Adam does a square root and a division per element over five buffers: enough work per
# element that the thread pool pays off at the transcendental loops' threshold. So do
# RMSprop and Adagrad.
@transcendental
def adam_step(grad, step_size, bias_correction2_sqrt, beta1, one_minus_beta1, beta2, one_minus_beta2,
              eps, weight_decay, param_scale, maximize, amsgrad, exp_avg, exp_avg_sq, max_exp_avg_sq, param):
    """Adam / AdamW.

    ``step_size`` is lr / (1 - beta1**t) and ``bias_correction2_sqrt`` sqrt(1 - beta2**t).
    ``weight_decay`` is Adam's L2 term added to the gradient (0 for AdamW); ``param_scale``
    is AdamW's decoupled decay 1 - lr * weight_decay (1 for Adam). ``max_exp_avg_sq`` is
    read and written only when ``amsgrad``.
    """
    for i in prange(grad.size):
        p = param_scale * param[i]
        g = grad[i]
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
        m = beta1 * exp_avg[i] + one_minus_beta1 * g
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * (g * g)
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            largest = max_exp_avg_sq[i]
            if v < largest:
                v = largest
            max_exp_avg_sq[i] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = p - step_size * (m / denom)


@transcendental
def rmsprop_step(grad, lr, alpha, one_minus_alpha, eps, weight_decay, momentum, centered, maximize,
                 square_avg, grad_avg, momentum_buffer, param):
    """RMSprop. ``grad_avg`` is read and written only when ``centered``, ``momentum_buffer``
    only when ``momentum`` is nonzero (both may be empty otherwise)."""
    for i in prange(grad.size):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
        s = alpha * square_avg[i] + one_minus_alpha * (g * g)
        square_avg[i] = s
        if centered:
            a = grad_avg[i]
            a = a + one_minus_alpha * (g - a)  # torch's lerp(grad_avg, g, 1 - alpha)
            grad_avg[i] = a
            s = s - a * a
        avg = np.sqrt(s) + eps
        if momentum != 0.0:
            b = momentum * momentum_buffer[i] + g / avg
            momentum_buffer[i] = b
            param[i] = p - lr * b
        else:
            param[i] = p - lr * (g / avg)


@transcendental
def adagrad_step(grad, clr, weight_decay, eps, maximize, state_sum, param):
    """Adagrad; ``clr`` is lr / (1 + (t - 1) * lr_decay)."""
    for i in prange(grad.size):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = p - clr * (g / (np.sqrt(s) + eps))


# ----------------------------------------------------------------------------- clipping
@memory_bound
def grad_norm_power_sum(grad, norm_type, out):
    """out[0] = sum |g|**norm_type over ``grad`` (max |g| when norm_type is inf), in float64.
    Squares and absolute values get loops of their own so that they vectorize."""
    total = 0.0
    if norm_type == np.inf:
        nans = 0
        for i in prange(grad.size):
            g = np.float64(grad[i])
            total = max(total, abs(g))
            nans += g != g  # max() would drop a NaN; torch's inf-norm is NaN then
        if nans:
            total = np.nan
    elif norm_type == 2.0:
        for i in prange(grad.size):
            g = np.float64(grad[i])
            total += g * g
    elif norm_type == 1.0:
        for i in prange(grad.size):
            total += abs(np.float64(grad[i]))
    else:
        for i in prange(grad.size):
            total += abs(np.float64(grad[i])) ** norm_type
    out[0] = total


@memory_bound
def grad_scale(grad, coefficient, out):
    """out = grad * coefficient (``out`` may be ``grad``)."""
    for i in prange(grad.size):
        out[i] = grad[i] * coefficient


@memory_bound
def grad_clamp(grad, low, high, out):
    """out = grad clamped to [low, high] (``out`` may be ``grad``); NaN stays NaN, as in torch."""
    for i in prange(grad.size):
        g = grad[i]
        if g < low:
            g = low
        elif g > high:
            g = high
        out[i] = g
