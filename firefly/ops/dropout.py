"""``dropout``: inverted dropout with uniforms drawn from firefly's generator (so
``firefly.manual_seed`` reproduces the mask), or from ``seed`` when given."""

import numbers

import numpy as np

from firefly import random
from firefly.kernels import dropout as K
from firefly.ops.base import Op
from firefly.ops.registry import register


@register
class Dropout(Op):
    """``apply("dropout", x, p=0.5, training=True, seed=None)``: each element is zeroed with
    probability p and the rest scaled by 1 / (1 - p); with ``training=False`` the output is a
    copy of x. ``seed`` (an int) draws the mask from its own generator instead of firefly's,
    for a reproducible mask independent of other draws."""

    name = "dropout"
    forward_kernel, backward_kernel = K.dropout_forward, K.dropout_backward

    @staticmethod
    def forward(ctx, x, p=0.5, training=True, seed=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
        ctx.active = bool(training) and p > 0.0
        if not ctx.active:
            return x.copy()
        rng = random.generator() if seed is None else np.random.default_rng(seed)
        draws = rng.random(x.shape)
        scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
        out = np.empty_like(x)
        ctx.op.forward_kernel(x.reshape(-1), draws.reshape(-1), float(p), scale, out.reshape(-1))
        ctx.save_for_backward(draws)
        ctx.p, ctx.scale = float(p), scale
        return out

    @staticmethod
    def backward(ctx, grad):
        if not ctx.active:
            return grad.copy()
        (draws,) = ctx.saved_tensors
        dx = np.empty_like(grad)
        ctx.op.backward_kernel(
            grad.reshape(-1), draws.reshape(-1), ctx.p, ctx.scale, dx.reshape(-1)
        )
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        if not ctx.active:
            return grad * 1.0
        (draws,) = ctx.saved_tensors
        return grad * np.where(draws >= ctx.p, ctx.scale, 0.0).astype(grad.dtype)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        # A fixed seed: the battery's finite differences rerun the op and need the same mask.
        return (x,), {
            "p": float(rng.choice([0.2, 0.5])),
            "training": True,
            "seed": int(rng.integers(0, 2**31)),
        }
