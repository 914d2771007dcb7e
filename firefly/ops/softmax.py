"""Softmax and log-softmax along one axis, with fused backward kernels."""
import numpy as np

from firefly.kernels import softmax as K
from firefly.ops.base import Op
from firefly.ops.broadcast import split3
from firefly.ops.reduce import normalize_axes
from firefly.ops.registry import register


class _AlongAxis(Op):
    @classmethod
    def forward(cls, ctx, x, axis=-1):
        if isinstance(axis, (tuple, list)) or axis is None:
            raise TypeError(f"{cls.name}: axis must be a single int, got {axis!r}")
        (ax,) = normalize_axes(cls.name, axis, x) or (0,)
        x3 = x.reshape(split3(x.shape, [ax]) if x.ndim else (1, 1, 1))
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
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-3.0, 3.0, size=shape).astype(dtype)
        axis = int(rng.integers(-len(shape), len(shape))) if shape else -1
        return (x,), {"axis": axis}


@register
class Softmax(_AlongAxis):
    name = "softmax"
    forward_kernel, backward_kernel = K.softmax_forward, K.softmax_backward


@register
class LogSoftmax(_AlongAxis):
    name = "log_softmax"
    forward_kernel, backward_kernel = K.log_softmax_forward, K.log_softmax_backward
