"""Softmax and log-softmax along one axis, with fused backward kernels from the softmax-like
row family (``firefly.kernels.families.row_softmax``)."""

import numpy as np

from firefly.kernels import families, vmath
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.registry import register
from firefly.ops.shapes import normalize_axes, split3


class _AlongAxis(Op):
    @classmethod
    def forward(cls, ctx, x, axis=-1):
        ndim = x.ndim
        if type(axis) is int and ndim and (axis == -1 or axis == ndim - 1) and x.size:
            # The usual call, along the last axis of a non-empty tensor: its (outer, axis, 1)
            # form without the general axis checks, which cost as much as a small row's kernel.
            x3 = x.reshape(-1, x.shape[-1], 1)
        else:
            if isinstance(axis, (tuple, list)) or axis is None:
                raise TypeError(f"{cls.name}: axis must be a single int, got {axis!r}")
            (ax,) = normalize_axes(cls.name, axis, x) or (0,)
            x3 = x.reshape(split3(x.shape, [ax]) if ndim else (1, 1, 1))
        out = np.empty_like(x)
        if x.size:  # the kernels read each row's first element
            cls.forward_kernel(x3, out.reshape(x3.shape))
        ctx.save_for_backward(out.reshape(x3.shape))
        return out

    @classmethod
    def backward(cls, ctx, grad):
        (out3,) = ctx.saved_tensors
        dx = np.empty_like(grad)
        if dx.size:
            cls.backward_kernel(grad.reshape(out3.shape), out3, dx.reshape(out3.shape))
        return dx

    @classmethod
    def backward_graph(cls, ctx, grad, inputs, out):
        axis = ctx.applied_attrs.get("axis", -1) if out.ndim else None
        return cls.graph_rule(grad, out, axis)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        axis = int(rng.integers(-len(shape), len(shape))) if shape else -1
        return (samples.uniform(rng, shape, dtype, -3.0, 3.0),), {"axis": axis}


def _softmax_constant(m, s):
    return 1.0 / s


def _softmax_value(x, e, m, inv_sum):
    return e * inv_sum


def _softmax_grad_term(grad, y):
    return grad * y


def _softmax_grad(grad, y, dot):
    return y * (grad - dot)  # dx = y * (g - sum(g * y))


@register
class Softmax(_AlongAxis):
    name = "softmax"
    forward_kernel = families.row_softmax("softmax_forward", _softmax_constant, _softmax_value)
    # Costed as transcendental (parallel from 262,144 elements, as the forwards and
    # log-softmax's backward): two passes and a sum per row are more work per byte than a copy.
    # At (1000, 1000) the memory-bound threshold kept it on one core while torch used two
    # (benchmarks/measure_thresholds.py; docs/performance.md has the numbers).
    backward_kernel = families.row_softmax_grad(
        "softmax_backward", _softmax_grad_term, _softmax_grad, cost="transcendental"
    )

    @staticmethod
    def graph_rule(grad, y, axis):
        return y * (grad - (grad * y).sum(axis=axis, keepdims=True))


def _log_softmax_constant(m, s):
    return np.log(s)


def _log_softmax_value(x, e, m, log_sum):
    return (x - m) - log_sum


def _log_softmax_grad_term(grad, y):
    return grad


def _log_softmax_grad(grad, y, total):
    # dx = g - softmax(x) * sum(g), softmax recovered from the output y <= 0 (as the forward's
    # exp, probabilities below 2**-126 flush to 0)
    return grad - vmath.exp_flush_subnormal(y) * total


@register
class LogSoftmax(_AlongAxis):
    name = "log_softmax"
    forward_kernel = families.row_softmax(
        "log_softmax_forward", _log_softmax_constant, _log_softmax_value
    )
    backward_kernel = families.row_softmax_grad(
        "log_softmax_backward", _log_softmax_grad_term, _log_softmax_grad, cost="transcendental"
    )

    @staticmethod
    def graph_rule(grad, y, axis):
        return grad - y.exp() * grad.sum(axis=axis, keepdims=True)
