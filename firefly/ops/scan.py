"""Scans: ``cumsum`` along one dimension, declaring its running-sum kernel."""

import operator

import numpy as np

from firefly.kernels import scan as K
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.registry import register
from firefly.ops.select import split3_at


@register
class Cumsum(Op):
    """``cumsum(x, dim=d)``: running sums along ``dim``; ``reverse=True`` sums from the end (the
    backward of a forward scan, and so its own differentiable backward).

    Declared kernel, both directions: ``cumsum_along``, run forward or in reverse."""

    name = "cumsum"
    forward_kernel = backward_kernel = K.cumsum_along

    @classmethod
    def forward(cls, ctx, x, dim=None, reverse=False):
        try:
            d = operator.index(dim)
        except TypeError:
            raise ctx.error(f"dim must be an int, got {dim!r}", x, kind=TypeError) from None
        n = max(x.ndim, 1)
        if not -n <= d < n:
            raise ctx.error(
                f"dim {d} is out of range; valid dims are {-n} to {n - 1}", x, kind=IndexError
            )
        d %= n
        ctx.dim, ctx.reverse = d, bool(reverse)
        shape3 = split3_at(x.shape, d) if x.ndim else (1, 1, 1)
        out = np.empty_like(x)
        cls.forward_kernel(x.reshape(shape3), ctx.reverse, out.reshape(shape3))
        ctx.shape3 = shape3
        return out

    @classmethod
    def backward(cls, ctx, grad):
        dx = np.empty_like(grad)
        cls.backward_kernel(grad.reshape(ctx.shape3), not ctx.reverse, dx.reshape(ctx.shape3))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        from firefly.ops import apply

        return apply("cumsum", grad, dim=ctx.dim, reverse=not ctx.reverse)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = samples.uniform(rng, shape, dtype)
        dim = int(rng.integers(0, max(len(shape), 1)))
        if rng.random() < 0.3:
            dim -= max(len(shape), 1)
        return (x,), {"dim": dim, "reverse": bool(rng.random() < 0.3)}
