"""Optimizer kernels: one fused pass over flat parameter, gradient and state buffers.

Each update kernel reads a parameter's gradient once, updates the optimizer state and the
parameter in place, and follows PyTorch's single-tensor implementation (where the
documentation and implementation differ, as for ``maximize`` with weight decay, the
implementation).

One call updates a whole flat buffer (every parameter of one dtype, across param groups):
``runs`` is an (R, 2) int64 array of [start, stop) element ranges, each with its own row of
``coefficients`` (in the buffers' dtype) and ``flags`` (bool), because param groups have their
own hyperparameters and parameters their own step counts. Arguments: the whole flat gradient
buffer first and the whole flat parameter buffer last (``sized_kernel`` picks the serial or
prange build from the buffer's size), the runs, coefficients, flags and state buffers
between. The prange loop runs over fixed chunks of the buffer, each chunk doing its part of
every run, so that small param groups add neither a kernel call nor a parallel region.
(Measured on 1M float32 parameters in three groups: one call per (group, dtype) cost 30% more
than one call over a single group for SGD with momentum, most of it per-call overhead.) A
state buffer that no run uses may be an empty array.

The coefficients are in the buffers' dtype, so a float32 buffer computes in float32 as
PyTorch does: float64 arithmetic made a float32 Adam step 3x slower (its square roots and
divisions run at half the SIMD width). The optimizer computes every step-dependent
coefficient (bias corrections, 1 - beta) in Python floats first, so each is rounded only once.

The gradient-clipping kernels (``grad_norm_power_sum``, ``grad_scale_``, ``grad_clamp_``) run
over the same flat gradient buffers; norms accumulate in float64 whatever the gradients'
dtype.
"""

import numpy as np
from numba import prange

from firefly.kernels._jit import inline_helper, memory_bound, transcendental

UPDATE_CHUNK = 1 << 16  # elements per prange task of the update kernels


@inline_helper
def _run_in_chunk(runs, r, chunk):
    """[start, stop) of run ``r`` within chunk ``chunk`` (empty when they do not overlap)."""
    low = chunk * UPDATE_CHUNK
    return max(runs[r, 0], low), min(runs[r, 1], low + UPDATE_CHUNK)


# Each run's loop works on slices, so that its indices count from zero: an offset index gets
# a negative-index check per element, which stops the loop vectorizing. A state buffer a run
# does not use gets a loop of its own that never mentions it: LLVM's runtime overlap checks
# count every array a loop may touch, and an unused empty array that the checks place in
# the path of a real one sends the whole loop to its scalar version (2x slower for Adam).
@inline_helper
def _gradient(g, p, weight_decay, maximize):
    """The gradient a step uses: negated when maximizing, plus the L2 term."""
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    return g


@inline_helper
def _sgd_run(
    grad,
    lr,
    weight_decay,
    momentum,
    one_minus_dampening,
    nesterov,
    maximize,
    first_step,
    momentum_buffer,
    param,
):
    # One loop per momentum case: a loop-invariant branch left inside cost 15% on the
    # momentum step (LLVM does not unswitch them all).
    if momentum == 0.0:
        for i in range(grad.size):
            p = param[i]
            param[i] = p - lr * _gradient(grad[i], p, weight_decay, maximize)
    elif first_step:
        for i in range(grad.size):
            p = param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            momentum_buffer[i] = g
            param[i] = p - lr * (g + momentum * g if nesterov else g)
    else:
        for i in range(grad.size):
            p = param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            b = momentum * momentum_buffer[i] + one_minus_dampening * g
            momentum_buffer[i] = b
            param[i] = p - lr * (g + momentum * b if nesterov else b)


@memory_bound
def sgd_step(grad, runs, coefficients, flags, momentum_buffer, param):
    """SGD. Coefficients per run: lr, weight_decay, momentum, 1 - dampening; flags: nesterov,
    maximize, first_step. With momentum, ``momentum_buffer`` is read and written; on the
    buffer's first step it starts as the gradient itself (no dampening), as in PyTorch."""
    for chunk in prange((grad.size + UPDATE_CHUNK - 1) // UPDATE_CHUNK):
        for r in range(runs.shape[0]):
            start, stop = _run_in_chunk(runs, r, chunk)
            if start < stop:
                k, f = coefficients[r], flags[r]
                _sgd_run(
                    grad[start:stop],
                    k[0],
                    k[1],
                    k[2],
                    k[3],
                    f[0],
                    f[1],
                    f[2],
                    momentum_buffer[start:stop] if k[2] != 0.0 else momentum_buffer[:0],
                    param[start:stop],
                )


@inline_helper
def _adam_moments(g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2):
    return beta1 * m + one_minus_beta1 * g, beta2 * v + one_minus_beta2 * (g * g)


@inline_helper
def _adam_run(
    grad,
    step_size,
    inverse_bias_correction2_sqrt,
    beta1,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    eps,
    weight_decay,
    param_scale,
    maximize,
    amsgrad,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    param,
):
    if amsgrad:
        for i in range(grad.size):
            p = param_scale * param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            m, v = _adam_moments(
                g, exp_avg[i], exp_avg_sq[i], beta1, one_minus_beta1, beta2, one_minus_beta2
            )
            exp_avg[i] = m
            exp_avg_sq[i] = v
            largest = max_exp_avg_sq[i]
            if v < largest:  # a NaN v stays NaN, as in torch.maximum
                v = largest
            max_exp_avg_sq[i] = v
            param[i] = p - step_size * (m / (np.sqrt(v) * inverse_bias_correction2_sqrt + eps))
    else:
        for i in range(grad.size):
            p = param_scale * param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            m, v = _adam_moments(
                g, exp_avg[i], exp_avg_sq[i], beta1, one_minus_beta1, beta2, one_minus_beta2
            )
            exp_avg[i] = m
            exp_avg_sq[i] = v
            param[i] = p - step_size * (m / (np.sqrt(v) * inverse_bias_correction2_sqrt + eps))


# Adam does a square root and a division per element over five buffers: enough work per
# element that the thread pool pays off at the transcendental loops' threshold. So do
# RMSprop and Adagrad.
@transcendental
def adam_step(grad, runs, coefficients, flags, exp_avg, exp_avg_sq, max_exp_avg_sq, param):
    """Adam / AdamW. Coefficients per run: step_size = lr / (1 - beta1**t),
    1 / sqrt(1 - beta2**t) (torch divides by sqrt(1 - beta2**t); a multiplication instead of
    the second division per element made the float32 step 25% faster, for a rounding
    difference of an ulp), beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay (Adam's L2 term
    added to the gradient; 0 for AdamW), param_scale (AdamW's decoupled decay
    1 - lr * weight_decay; 1 for Adam); flags: maximize, amsgrad. ``max_exp_avg_sq`` is read
    and written only by amsgrad runs."""
    for chunk in prange((grad.size + UPDATE_CHUNK - 1) // UPDATE_CHUNK):
        for r in range(runs.shape[0]):
            start, stop = _run_in_chunk(runs, r, chunk)
            if start < stop:
                k, f = coefficients[r], flags[r]
                _adam_run(
                    grad[start:stop],
                    k[0],
                    k[1],
                    k[2],
                    k[3],
                    k[4],
                    k[5],
                    k[6],
                    k[7],
                    k[8],
                    f[0],
                    f[1],
                    exp_avg[start:stop],
                    exp_avg_sq[start:stop],
                    max_exp_avg_sq[start:stop] if f[1] else max_exp_avg_sq[:0],
                    param[start:stop],
                )


@inline_helper
def _rmsprop_run(
    grad,
    lr,
    alpha,
    one_minus_alpha,
    eps,
    weight_decay,
    momentum,
    centered,
    maximize,
    square_avg,
    grad_avg,
    momentum_buffer,
    param,
):
    # d = g / (sqrt(v~) + eps), then param -= lr * d, or through the momentum buffer.
    if centered and momentum != 0.0:
        for i in range(grad.size):
            p = param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            s = alpha * square_avg[i] + one_minus_alpha * (g * g)
            square_avg[i] = s
            a = grad_avg[i]
            a = a + one_minus_alpha * (g - a)  # torch's lerp(grad_avg, g, 1 - alpha)
            grad_avg[i] = a
            b = momentum * momentum_buffer[i] + g / (np.sqrt(s - a * a) + eps)
            momentum_buffer[i] = b
            param[i] = p - lr * b
    elif centered:
        for i in range(grad.size):
            p = param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            s = alpha * square_avg[i] + one_minus_alpha * (g * g)
            square_avg[i] = s
            a = grad_avg[i]
            a = a + one_minus_alpha * (g - a)
            grad_avg[i] = a
            param[i] = p - lr * (g / (np.sqrt(s - a * a) + eps))
    elif momentum != 0.0:
        for i in range(grad.size):
            p = param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            s = alpha * square_avg[i] + one_minus_alpha * (g * g)
            square_avg[i] = s
            b = momentum * momentum_buffer[i] + g / (np.sqrt(s) + eps)
            momentum_buffer[i] = b
            param[i] = p - lr * b
    else:
        for i in range(grad.size):
            p = param[i]
            g = _gradient(grad[i], p, weight_decay, maximize)
            s = alpha * square_avg[i] + one_minus_alpha * (g * g)
            square_avg[i] = s
            param[i] = p - lr * (g / (np.sqrt(s) + eps))


@transcendental
def rmsprop_step(grad, runs, coefficients, flags, square_avg, grad_avg, momentum_buffer, param):
    """RMSprop. Coefficients per run: lr, alpha, 1 - alpha, eps, weight_decay, momentum;
    flags: centered, maximize. ``grad_avg`` is read and written only by centered runs,
    ``momentum_buffer`` only by runs with momentum."""
    for chunk in prange((grad.size + UPDATE_CHUNK - 1) // UPDATE_CHUNK):
        for r in range(runs.shape[0]):
            start, stop = _run_in_chunk(runs, r, chunk)
            if start < stop:
                k, f = coefficients[r], flags[r]
                _rmsprop_run(
                    grad[start:stop],
                    k[0],
                    k[1],
                    k[2],
                    k[3],
                    k[4],
                    k[5],
                    f[0],
                    f[1],
                    square_avg[start:stop],
                    grad_avg[start:stop] if f[0] else grad_avg[:0],
                    momentum_buffer[start:stop] if k[5] != 0.0 else momentum_buffer[:0],
                    param[start:stop],
                )


@inline_helper
def _adagrad_run(grad, clr, weight_decay, eps, maximize, state_sum, param):
    for i in range(grad.size):
        p = param[i]
        g = _gradient(grad[i], p, weight_decay, maximize)
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = p - clr * (g / (np.sqrt(s) + eps))


@transcendental
def adagrad_step(grad, runs, coefficients, flags, state_sum, param):
    """Adagrad. Coefficients per run: clr = lr / (1 + (t - 1) * lr_decay), weight_decay, eps;
    flags: maximize."""
    for chunk in prange((grad.size + UPDATE_CHUNK - 1) // UPDATE_CHUNK):
        for r in range(runs.shape[0]):
            start, stop = _run_in_chunk(runs, r, chunk)
            if start < stop:
                k = coefficients[r]
                _adagrad_run(
                    grad[start:stop],
                    k[0],
                    k[1],
                    k[2],
                    flags[r, 0],
                    state_sum[start:stop],
                    param[start:stop],
                )


# ----------------------------------------------------------------------------- clipping
# A single running float64 sum is one dependent add after another (no fastmath, so LLVM may
# not reorder it). Instead the gradient is read as rows of 4 x W elements, W = lanes.size:
# W independent float64 sums, each adding four elements per row, vectorize. Indexing a 3-D
# view with loop counters also spares the negative-index checks that kept flat index
# arithmetic (``grad[i + k]``) scalar. prange splits the rows into chunks.
NORM_LANES = 32
NORM_CHUNK_ROWS = 256


@memory_bound
def grad_norm_power_sum(grad, norm_type, lanes):
    """lanes[0] = sum |g|**norm_type over ``grad`` (max |g| when norm_type is inf; NaN if
    any element is NaN, as torch's inf-norm), accumulated in float64 (the 2-norm's squares
    in fours in the gradient's dtype first). ``lanes`` is float64 scratch of NORM_LANES
    elements."""
    W = lanes.size
    n = grad.size
    rows = n // (4 * W)
    body = grad[: rows * 4 * W].reshape(rows, 4, W)
    chunks = (rows + NORM_CHUNK_ROWS - 1) // NORM_CHUNK_ROWS
    partial = np.zeros(chunks)
    nans = np.zeros(chunks)
    for c in prange(chunks):
        acc = np.zeros(W)
        first = c * NORM_CHUNK_ROWS
        last = min(first + NORM_CHUNK_ROWS, rows)
        if norm_type == 2.0:
            for r in range(first, last):
                for k in range(W):
                    # Four squares summed in the gradient's dtype, then widened: a float32
                    # rounding per four elements, never compounded (the running sums are
                    # float64), for half-width arithmetic on float32 gradients.
                    a = body[r, 0, k]
                    b = body[r, 1, k]
                    d = body[r, 2, k]
                    e = body[r, 3, k]
                    acc[k] += np.float64((a * a + b * b) + (d * d + e * e))
            partial[c] = acc.sum()
        elif norm_type == 1.0:
            for r in range(first, last):
                for k in range(W):
                    acc[k] += (abs(np.float64(body[r, 0, k])) + abs(np.float64(body[r, 1, k]))) + (
                        abs(np.float64(body[r, 2, k])) + abs(np.float64(body[r, 3, k]))
                    )
            partial[c] = acc.sum()
        elif norm_type == np.inf:
            nan_count = np.zeros(W)  # max() drops a NaN: count them apart
            for r in range(first, last):
                for k in range(W):
                    for j in range(4):
                        a = np.float64(body[r, j, k])
                        acc[k] = max(acc[k], abs(a))
                        nan_count[k] += a != a
            partial[c] = acc.max()
            nans[c] = nan_count.sum()
        else:
            total = 0.0
            for r in range(first, last):
                for j in range(4):
                    for k in range(W):
                        total += abs(np.float64(body[r, j, k])) ** norm_type
            partial[c] = total
    # The last n - rows * 4W (fewer than 4W) elements, and the chunks' results.
    tail_total = 0.0
    tail_nans = 0.0
    for i in range(rows * 4 * W, n):
        a = abs(np.float64(grad[i]))
        if norm_type == 2.0:
            tail_total += a * a
        elif norm_type == 1.0:
            tail_total += a
        elif norm_type == np.inf:
            tail_total = max(tail_total, a)
            tail_nans += a != a
        else:
            tail_total += a**norm_type
    if norm_type == np.inf:
        result = tail_total
        for c in range(chunks):
            result = max(result, partial[c])
        lanes[0] = np.nan if nans.sum() + tail_nans > 0 else result
    else:
        lanes[0] = partial.sum() + tail_total


# In-place kernels take the array once: given as both input and output, LLVM's runtime
# overlap check fails and the loop runs scalar (8x slower). The coefficients come first, as a
# small array of the gradient's dtype, so that sized_kernel sizes the call by the gradient.
@memory_bound
def grad_scale_(coefficient, grad):
    """grad *= coefficient[0], in place."""
    c = coefficient[0]
    for i in prange(grad.size):
        grad[i] = grad[i] * c


@memory_bound
def grad_clamp_(bounds, grad):
    """grad clamped to [bounds[0], bounds[1]] in place; NaN stays NaN, as in torch."""
    low, high = bounds[0], bounds[1]
    for i in prange(grad.size):
        g = grad[i]
        if g < low:
            g = low
        elif g > high:
            g = high
        grad[i] = g
