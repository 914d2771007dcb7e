"""Optimizer kernels: the fused update family, and the gradient-clipping kernels.

The update family (``update_kernel``) is one template loop, specialised per optimizer with its
per-run update (``_jit.specialise``, as the op kernel families in ``firefly.kernels.families``
are with an op's scalar math). Each specialised kernel reads a parameter's gradient once,
updates the optimizer state and the parameter in place, and follows PyTorch's single-tensor
implementation (where the documentation and implementation differ, as for ``maximize`` with
weight decay, the implementation).

One call updates a whole flat buffer (every parameter of one dtype, across param groups):
``kernel(grad, runs, fields, states, param)``. ``runs`` is an (R, 2) int64 array of
[start, stop) element ranges, each with its own row of ``fields``, a structured array whose
named fields are the optimizer's declared coefficients (in the buffers' dtype) and flags
(bool) in their declared order, because param groups have their own hyperparameters and
parameters their own step counts. ``states`` is a tuple of the optimizer's flat state buffers
in their declared order (a buffer that no run uses may be an empty array). The whole flat
gradient buffer comes first and the whole flat parameter buffer last (``sized_kernel`` picks
the serial or prange build from the buffer's size). The prange loop runs over fixed chunks of
the buffer, each chunk doing its part of every run, so that small param groups add neither a
kernel call nor a parallel region. (Measured on 1M float32 parameters in three groups: one
call per (group, dtype) cost 30% more than one call over a single group for SGD with
momentum, most of it per-call overhead.)

The optimizer's per-run update is ``update(fields, grad, states, start, stop, param)``:
``fields`` is its run's row (read by name: ``fields.lr``), ``grad`` and ``param`` the run's
slices, ``states`` the whole state buffers, which it slices with ``start:stop`` itself (a run
that does not use a state never touches it, so it may be empty). It works on slices, so that
its loop indices count from zero: an offset index gets a negative-index check per element,
which stops the loop vectorizing. It reads its fields into locals before its loops, and a
state buffer a run does not use gets a loop of its own that never mentions it: LLVM's runtime
overlap checks count every array a loop may touch, and an unused empty array that the checks
place in the path of a real one sends the whole loop to its scalar version (2x slower for
Adam). Likewise one loop per case of a loop-invariant branch (SGD with and without momentum):
a branch left inside the loop cost 15% on the momentum step (LLVM does not unswitch them all).
The helpers it calls live in this module (``decayed_gradient``): Numba's cache of a
specialised kernel is checked against this file's time stamp and the digest of the update
function itself, not of functions it calls from elsewhere.

The coefficients are in the buffers' dtype, so a float32 buffer computes in float32 as
PyTorch does: float64 arithmetic made a float32 Adam step 3x slower (its square roots and
divisions run at half the SIMD width). The optimizer computes every step-dependent
coefficient (bias corrections, 1 - beta) in Python floats first, so each is rounded only once.

The gradient-clipping kernels (``grad_norm_power_sum``, ``grad_clip_coefficient``,
``grad_clip_scale_``, ``grad_clamp_``) run over the same flat gradient buffers; norms accumulate
in float64 whatever the gradients' dtype. They pass the norm and the clipping coefficient from
one to the next in arrays, and decide in the kernels (whether to scale, whether the norm is
finite), so that ``clip_grad_norm_`` has no Python branch on a value and ``firefly.compile``
replays it.
"""

from collections.abc import Callable

import numpy as np
from numba import prange

from firefly.kernels._jit import (
    build_specialised,
    called_helper,
    inline_helper,
    kernel,
    memory_bound,
)
from firefly.kernels._shares import each_share, share_range
from firefly.kernels.reduce import EMPTY_2D, partials_kernel
from firefly.kernels.vmath import like

UPDATE_CHUNK = 1 << 16  # elements per prange task of the update kernels


@inline_helper
def _run_in_chunk(runs, r, chunk):
    """[start, stop) of run ``r`` within chunk ``chunk`` (empty when they do not overlap)."""
    # Conditionals, not max and min: those are two more functions for every update kernel's
    # compile, which is a training script's first.
    low, high = chunk * UPDATE_CHUNK, (chunk + 1) * UPDATE_CHUNK
    start, stop = runs[r, 0], runs[r, 1]
    return (start if start > low else low), (stop if stop < high else high)


@called_helper
def decayed_gradient(g, p, weight_decay, maximize):
    """The gradient a step uses: negated when maximizing, plus the L2 term.

    A function of its own, which LLVM inlines, rather than Numba inlining a copy into each of
    an update's loops (SGD has three): SGD's kernel compiles in about a quarter less time, and
    SGD's and Adam's steps run at the same speed (docs/architecture.md)."""
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    return g


def _placeholder(*args):
    raise TypeError("the update template runs only as a specialised copy")


UPDATE = _placeholder  # the name the template reads and specialise() binds to an optimizer's update


def _fused_update(grad, runs, fields, states, param):
    for chunk in prange((grad.size + UPDATE_CHUNK - 1) // UPDATE_CHUNK):
        for r in range(runs.shape[0]):
            start, stop = _run_in_chunk(runs, r, chunk)
            if start < stop:
                UPDATE(fields[r], grad[start:stop], states, start, stop, param[start:stop])


def update_kernel(name: str, update: Callable, cost: str) -> Callable:
    """``kernel(grad, runs, fields, states, param)``: the fused update loop specialised with
    ``update(fields, grad, states, start, stop, param)``, an optimizer's per-run update (plain
    Python, compiled to be inlined). ``cost`` is "memory" (cheap arithmetic per element, as
    SGD) or "transcendental" (a square root and a division per element, as Adam: enough work
    that the thread pool pays off at the transcendental loops' threshold)."""
    return build_specialised(_fused_update, name, cost, UPDATE=update)


# ----------------------------------------------------------------------------- clipping
# A single running float64 sum is one dependent add after another (no fastmath, so LLVM may
# not reorder it). Instead the gradient is read as rows of 4 x W elements, W = lanes.size:
# W independent float64 sums, each adding four elements per row, vectorize. Indexing a 3-D
# view with loop counters also spares the negative-index checks that kept flat index
# arithmetic (``grad[i + k]``) scalar. The shares split the rows into chunks.
NORM_LANES = 32
NORM_CHUNK_ROWS = 256


@inline_helper
def _norm_partials(grad, norm_type, total):
    """grad_norm_power_sum's results per chunk of rows: the sum (the max for norm_type inf) in
    its first row, the count of NaNs (norm_type inf) in its second."""
    chunks = (grad.size // (4 * NORM_LANES) + NORM_CHUNK_ROWS - 1) // NORM_CHUNK_ROWS
    return np.empty((2, chunks))


@partials_kernel(_norm_partials, EMPTY_2D)
def grad_norm_power_sum(t, threads, partials, grad, norm_type, total):
    """total[0] += sum |g|**norm_type over ``grad`` (for norm_type inf, total[0] = max(total[0],
    max |g|), NaN if either is NaN or any element is NaN, as torch's inf-norm), accumulated in
    float64 (the 2-norm's squares in fours in the gradient's dtype first). ``total`` is a
    float64 array of one element, zero before the first gradient."""
    W = NORM_LANES
    n = grad.size
    rows = n // (4 * W)
    if threads == 1:
        partials = _norm_partials(grad, norm_type, total)
    partial, nans = partials[0], partials[1]
    chunks = partial.size
    if t < 0:
        each_share(threads)
    else:
        body = grad[: rows * 4 * W].reshape(rows, 4, W)
        c0, c1 = share_range(t, threads, chunks)
        for c in range(c0, c1):
            # The chunk's rows as a view indexed from 0: counted from c0, LLVM could not tell
            # that the rows were not negative, and kept Numba's wraparound of every index.
            chunk = body[c * NORM_CHUNK_ROWS : (c + 1) * NORM_CHUNK_ROWS]
            acc = np.zeros(W)
            if norm_type == 2.0:
                for r in range(chunk.shape[0]):
                    for k in range(W):
                        # Four squares summed in the gradient's dtype, then widened: a float32
                        # rounding per four elements, never compounded (the running sums are
                        # float64), for half-width arithmetic on float32 gradients.
                        a = chunk[r, 0, k]
                        b = chunk[r, 1, k]
                        d = chunk[r, 2, k]
                        e = chunk[r, 3, k]
                        acc[k] += np.float64((a * a + b * b) + (d * d + e * e))
                partial[c] = acc.sum()
            elif norm_type == 1.0:
                for r in range(chunk.shape[0]):
                    for k in range(W):
                        acc[k] += (
                            abs(np.float64(chunk[r, 0, k])) + abs(np.float64(chunk[r, 1, k]))
                        ) + (abs(np.float64(chunk[r, 2, k])) + abs(np.float64(chunk[r, 3, k])))
                partial[c] = acc.sum()
            elif norm_type == np.inf:
                nan_count = np.zeros(W)  # max() drops a NaN: count them apart
                for r in range(chunk.shape[0]):
                    for k in range(W):
                        for j in range(4):
                            a = np.float64(chunk[r, j, k])
                            acc[k] = max(acc[k], abs(a))
                            nan_count[k] += a != a
                partial[c] = acc.max()
                nans[c] = nan_count.sum()
            else:
                power_sum = 0.0
                for r in range(chunk.shape[0]):
                    for j in range(4):
                        for k in range(W):
                            power_sum += abs(np.float64(chunk[r, j, k])) ** norm_type
                partial[c] = power_sum
        if threads > 1:
            return
    # Once, after every share: the last n - rows * 4W (fewer than 4W) elements, and the
    # chunks' results.
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
        result = max(total[0], tail_total)
        for c in range(chunks):
            result = max(result, partial[c])
        total[0] = np.nan if nans.sum() + tail_nans > 0 or total[0] != total[0] else result
    else:
        total[0] += partial.sum() + tail_total


@kernel
def grad_clip_coefficient(total, norm_type, max_norm, error_if_nonfinite, norm, coefficient):
    """From grad_norm_power_sum's ``total``: norm[0] = the total norm (the norm_type-th root of
    the sum; the max itself for inf), in ``norm``'s dtype, and coefficient[0] = max_norm /
    (norm + 1e-6), as torch computes it (clamped at 1 by grad_clip_scale_). A non-finite norm
    raises RuntimeError when ``error_if_nonfinite``, before any gradient is scaled."""
    s = total[0]
    if norm_type == np.inf or norm_type == 1.0:
        value = s
    elif norm_type == 2.0:
        value = np.sqrt(s)
    else:
        value = s ** (1.0 / norm_type)
    if error_if_nonfinite and not np.isfinite(value):
        raise RuntimeError(
            "clip_grad_norm_: the total norm for gradients from `parameters` is non-finite, so "
            "it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    norm[0] = value
    coefficient[0] = max_norm / (value + 1e-6)


# In-place kernels take the array once: given as both input and output, LLVM's runtime
# overlap check fails and the loop runs scalar (8x slower). The coefficients come first, as a
# small array, so that sized_kernel sizes the call by the gradient.
@memory_bound
def grad_clip_scale_(coefficient, grad):
    """grad *= coefficient[0] (float64, rounded to grad's dtype once) in place, unless the
    coefficient is 1 or more: torch clamps it at 1, and multiplying by 1 changes nothing. A NaN
    coefficient scales (to NaN), as in torch."""
    c = coefficient[0]
    if c >= 1.0:
        return
    for i in prange(grad.size):
        grad[i] = grad[i] * like(c, grad[i])


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
