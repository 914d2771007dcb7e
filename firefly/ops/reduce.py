"""Reductions: sum, mean and max over ``axis`` (None, an int, a negative int or a tuple)."""

import math

import numpy as np

from firefly.kernels import reduce as K
from firefly.kernels.shape import gather_strided
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.families import as_shape
from firefly.ops.registry import register
from firefly.ops.shapes import (
    axis_runs,
    expand_sum_grad,
    normalize_axes,
    permute_copy,
    reduced_shape,
    split3,
    sum_axes,
)


def _single_axis(axis, x):
    """``axis`` as a non-negative int when it names one dimension of ``x`` (an int in range, of
    a tensor of at least one dimension), else None: the common case (``sum(axis=-1)``) then
    skips the general axes handling, which cost more than the kernel at small sizes."""
    ndim = x.ndim
    if type(axis) is int and ndim and -ndim <= axis < ndim:
        return axis % ndim
    return None


class _SumLike(Op):
    """Declared kernels: forward ``(sum_flat, sum_forward)``, the first for the full reduction
    (axis None), the second for the others; backward ``(sum_flat_backward, sum_backward)``,
    likewise."""

    mean = False

    @classmethod
    def _scale(cls, count):
        """What the sum of ``count`` elements is multiplied by: 1 for a sum, 1 / count for a
        mean, and NaN for the mean over no elements, as in NumPy and PyTorch."""
        if not cls.mean:
            return 1.0
        return 1.0 / count if count else float("nan")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.forward_output_trusted = cls.forward.__func__ is _SumLike.forward.__func__

    @classmethod
    def forward(cls, ctx, x, axis=None, keepdims=False):
        flat_kernel, sum_kernel = cls.forward_kernel
        if axis is None:  # the full reduction, the common case (a loss): one flat pass
            scale = cls._scale(x.size)
            out = np.empty((1,) * x.ndim if keepdims else (), dtype=x.dtype)
            flat_kernel(x.ravel(), scale, out.ravel())
            ctx.x_shape, ctx.axes, ctx.scale = x.shape, None, scale
            return out
        a = _single_axis(axis, x)
        if a is not None:
            outer, reduced, inner = split3(x.shape, (a,))
            scale = cls._scale(reduced)
            out = np.empty(reduced_shape(x.shape, (a,), keepdims), dtype=x.dtype)
            sum_kernel(x.reshape(outer, reduced, inner), scale, out.reshape(outer, inner))
            ctx.x_shape, ctx.axes, ctx.scale = x.shape, (a,), scale
            return out
        axes = normalize_axes(cls.name, axis, x)
        scale = cls._scale(math.prod(x.shape[a] for a in axes))
        out = sum_axes(x, axes, sum_kernel, scale)
        ctx.x_shape, ctx.axes, ctx.scale = x.shape, axes, scale
        return out.reshape(reduced_shape(x.shape, axes, keepdims))

    @classmethod
    def backward(cls, ctx, grad):
        flat_kernel, expand_kernel = cls.backward_kernel
        if ctx.axes is None:
            dx = np.empty(ctx.x_shape, dtype=grad.dtype)
            flat_kernel(grad.reshape(1), ctx.scale, dx.reshape(-1))
            return dx
        kept = grad.reshape(reduced_shape(ctx.x_shape, ctx.axes, True))
        return expand_sum_grad(kept, ctx.x_shape, ctx.axes, ctx.scale, expand_kernel)

    @classmethod
    def backward_graph(cls, ctx, grad, inputs, out):
        shape = ctx.x_shape
        # A full reduction's 0-d gradient broadcasts as it is (expand adds the dimensions).
        kept = grad.shape if ctx.axes is None else reduced_shape(shape, ctx.axes, True)
        dx = as_shape(grad, kept).expand(shape)
        return dx * ctx.scale if cls.mean else dx

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = samples.uniform(rng, shape, dtype)
        return (x,), {"axis": samples.random_axes(rng, shape), "keepdims": bool(rng.random() < 0.5)}


@register
class Sum(_SumLike):
    name = "sum"
    forward_kernel = (K.sum_flat, K.sum_forward)
    backward_kernel = (K.sum_flat_backward, K.sum_backward)


@register
class Mean(_SumLike):
    name = "mean"
    forward_kernel = (K.sum_flat, K.sum_forward)
    backward_kernel = (K.sum_flat_backward, K.sum_backward)
    mean = True


@register
class Max(Op):
    """Maximum over axes. The gradient is split evenly among tied maxima, as ``torch.amax``.

    Axes that are not adjacent move to the end first (a strided gather), so that one kernel
    pass reduces them; backward gathers the gradient back into the input's order.
    """

    name = "max"
    forward_kernel = (K.max_forward, gather_strided)
    backward_kernel = (K.max_backward, gather_strided)

    @classmethod
    def forward(cls, ctx, x, axis=None, keepdims=False):
        max_kernel, gather = cls.forward_kernel
        if x.size == 0:
            normalize_axes("max", axis, x)  # a bad axis is reported before the empty tensor
            raise ctx.error("cannot take the max of an empty tensor", x)
        a = _single_axis(axis, x)
        if a is not None:  # the common case, without the general axes handling
            axes, order, work, run = (a,), None, x, (a,)
        else:
            axes = normalize_axes("max", axis, x)
            runs = axis_runs(axes)
            if len(runs) > 1:  # move the reduced axes to the end: one run, one kernel pass
                kept = [a for a in range(x.ndim) if a not in axes]
                order = tuple(kept) + axes
                work = permute_copy(x, order, gather)
                run = list(range(len(kept), x.ndim))
            else:
                order, work, run = None, x, runs[0] if runs else []
        outer, reduced, inner = split3(work.shape, run) if run else (1, 1, work.size)
        out = np.empty((outer, inner), dtype=x.dtype)
        x3 = work.reshape(outer, reduced, inner)
        max_kernel(x3, out)
        ctx.save_for_backward(x3, out)
        ctx.order, ctx.work_shape = order, work.shape
        return out.reshape(reduced_shape(x.shape, axes, keepdims))

    @classmethod
    def backward(cls, ctx, grad):
        grad_kernel, gather = cls.backward_kernel
        x3, out = ctx.saved_tensors
        dx3 = np.empty_like(x3)
        grad_kernel(grad.reshape(out.shape), x3, out, dx3)
        dx = dx3.reshape(ctx.work_shape)
        if ctx.order is not None:
            dx = permute_copy(dx, tuple(np.argsort(ctx.order)), gather)
        return dx

    @classmethod
    def backward_graph(cls, ctx, grad, inputs, out):
        # The gradient goes to the maxima, split among ties: a constant weight per element.
        (x,) = inputs
        axes = normalize_axes("max", ctx.applied_attrs.get("axis"), x)
        keep = reduced_shape(x.shape, axes, True)
        at_max = x.numpy() == out.numpy().reshape(keep)
        weight = at_max / at_max.sum(axis=axes, keepdims=True)
        return grad.reshape(keep).expand(x.shape) * weight.astype(x.dtype)

    sample_inputs = _SumLike.sample_inputs
