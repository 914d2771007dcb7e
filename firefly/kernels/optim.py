"""Optimizer kernels: one fused pass over flat parameter, gradient and state buffers.

Each kernel reads a parameter's gradient once, updates the optimizer state and the parameter
in place, and follows PyTorch's documented algorithm (where the documentation and
implementation differ, as for ``maximize`` with weight decay, the implementation). Arguments: the gradient first and the parameter last (``SizedKernel`` picks the
serial or prange build from their sizes), the hyperparameters in between.

The hyperparameters come as NumPy scalars of the buffers' dtype, so a float32 group computes
in float32 as PyTorch does: float64 arithmetic made a float32 Adam step 3x slower (its
square roots and divisions run at half the SIMD width). The optimizer computes every
step-dependent coefficient (bias corrections, 1 - beta) in Python floats first, so each is
rounded only once.
"""
import numpy as np
from numba import prange

from firefly.kernels._jit import memory_bound, transcendental


@memory_bound
def sgd_step(grad, lr, weight_decay, maximize, param):
    """param -= lr * (±grad + weight_decay * param)."""
    for i in prange(grad.size):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
        param[i] = p - lr * g


@memory_bound
def sgd_momentum_step(grad, lr, weight_decay, momentum, one_minus_dampening, nesterov, maximize,
                      first_step, momentum_buffer, param):
    """SGD with a momentum buffer. On the first step the buffer starts as the gradient itself
    (no dampening), as in PyTorch."""
    for i in prange(grad.size):
        p = param[i]
        g = grad[i]
        if maximize:
            g = -g
        if weight_decay != 0.0:
            g = g + weight_decay * p
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
# element that the thread pool pays off at the transcendental loops' threshold.
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
