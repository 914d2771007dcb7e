"""Reductions: sum, mean and max over ``axis`` (None, an int, a negative int or a tuple)."""
import math
import operator

import numpy as np

from firefly.kernels import reduce as K
from firefly.ops.base import Op
from firefly.ops.broadcast import axis_runs, split3, sum_axes
from firefly.ops.registry import register
from firefly.ops.shape import permute_copy


def normalize_axes(op_name, axis, x):
    """Sorted, non-negative, unique axes of ``x`` named by ``axis``."""
    ndim = x.ndim
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for ax in items:
        try:
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(f"{op_name}: axis must be None, an int or a tuple of ints, got {axis!r}") from None
        # A 0-d tensor accepts axis 0 and -1, as in PyTorch.
        if not (-ndim <= ax < ndim or (ndim == 0 and ax in (0, -1))):
            raise ValueError(
                f"{op_name}: axis {ax} is out of range for a tensor of shape {x.shape} "
                f"({x.dtype}); valid axes are {-ndim} to {ndim - 1}"
            )
        axes.append(ax % ndim if ndim else 0)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op_name}: repeated axis in {axis!r} for a tensor of shape {x.shape}")
    return tuple(sorted(a for a in axes if a < ndim))


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def expand_sum_grad(grad_kept, shape, axes, scale):
    """Broadcast a keepdims-shaped gradient back over ``axes`` of ``shape``, times ``scale``."""
    g = grad_kept
    for i, run in enumerate(axis_runs(axes)):
        full = g.shape[:run[0]] + tuple(shape[a] for a in run) + g.shape[run[-1] + 1:]
        out = np.empty(full, dtype=g.dtype)
        outer, reduced, inner = split3(full, run)
        K.sum_backward(g.reshape(outer, inner), scale if i == 0 else 1.0, out.reshape(outer, reduced, inner))
        g = out
    return g


class _SumLike(Op):
    mean = False

    @classmethod
    def forward(cls, ctx, x, axis=None, keepdims=False):
        axes = normalize_axes(cls.name, axis, x)
        count = math.prod(x.shape[a] for a in axes)
        # The mean over no elements is NaN, as in NumPy and PyTorch.
        scale = (1.0 / count if count else float("nan")) if cls.mean else 1.0
        out = sum_axes(x, axes, scale)
        ctx.x_shape, ctx.axes, ctx.scale = x.shape, axes, scale
        return out.reshape(reduced_shape(x.shape, axes, keepdims))

    @staticmethod
    def backward(ctx, grad):
        kept = grad.reshape(reduced_shape(ctx.x_shape, ctx.axes, True))
        return expand_sum_grad(kept, ctx.x_shape, ctx.axes, ctx.scale)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        axis = None
        if shape and rng.random() < 0.7:
            k = int(rng.integers(1, len(shape) + 1))
            picked = sorted(rng.choice(len(shape), size=k, replace=False).tolist())
            axis = tuple(a - len(shape) if rng.random() < 0.3 else a for a in picked)
            axis = axis[0] if len(axis) == 1 and rng.random() < 0.5 else axis
        return (x,), {"axis": axis, "keepdims": bool(rng.random() < 0.5)}


@register
class Sum(_SumLike):
    name = "sum"
    forward_kernel, backward_kernel = K.sum_forward, K.sum_backward


@register
class Mean(_SumLike):
    name = "mean"
    forward_kernel, backward_kernel = K.sum_forward, K.sum_backward
    mean = True


@register
class Max(Op):
    """Maximum over axes. The gradient is split evenly among tied maxima, as ``torch.amax``."""

    name = "max"
    forward_kernel, backward_kernel = K.max_forward, K.max_backward

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        axes = normalize_axes("max", axis, x)
        if x.size == 0:
            raise ctx.error("cannot take the max of an empty tensor", x)
        runs = axis_runs(axes)
        if len(runs) > 1:  # move the reduced axes to the end: one run, one kernel pass
            kept = [a for a in range(x.ndim) if a not in axes]
            order = tuple(kept) + axes
            work = permute_copy(x, order)
            run = list(range(len(kept), x.ndim))
        else:
            order, work, run = None, x, runs[0] if runs else []
        outer, reduced, inner = split3(work.shape, run) if run else (1, 1, work.size)
        out = np.empty((outer, inner), dtype=x.dtype)
        x3 = work.reshape(outer, reduced, inner)
        K.max_forward(x3, out)
        ctx.save_for_backward(x3, out)
        ctx.order, ctx.work_shape = order, work.shape
        return out.reshape(reduced_shape(x.shape, axes, keepdims))

    @staticmethod
    def backward(ctx, grad):
        x3, out = ctx.saved_tensors
        dx3 = np.empty_like(x3)
        K.max_backward(grad.reshape(out.shape), x3, out, dx3)
        dx = dx3.reshape(ctx.work_shape)
        if ctx.order is not None:
            dx = permute_copy(dx, tuple(np.argsort(ctx.order)))
        return dx

    sample_inputs = _SumLike.sample_inputs
