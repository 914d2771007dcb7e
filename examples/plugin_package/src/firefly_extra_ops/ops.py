"""The plugin's ops. The ``firefly.ops`` entry points in pyproject.toml name these classes, and
firefly registers them (checking that their kernels are Numba-compiled) when it loads plugins.

``extra_softplus`` and ``extra_gelu`` are scalar math on ``firefly.ops.UnaryOp``: the kernel
families build their forward and backward kernels, exactly as for firefly's built-in exp or
tanh. ``extra_clamp`` takes attributes, so it is written in full: its own kernels
(``kernels.py``) and its own ``forward`` and ``backward``.
"""

import math

import numpy as np

from firefly.kernels.vmath import exp, like, log1p, sigmoid, tanh
from firefly.ops import Op, UnaryOp
from firefly_extra_ops import kernels as K

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_COEF = 0.044715


class ExtraSoftplus(UnaryOp):
    """softplus(x) = log(1 + exp(x)), a smooth ReLU, computed as max(x, 0) + log1p(exp(-|x|)),
    which never overflows; its derivative is sigmoid(x)."""

    name = "extra_softplus"
    forward_cost = backward_cost = "transcendental"

    def scalar_forward(x):
        zero = like(0.0, x)  # a float64 literal would compute a float32 x in float64
        return (x if x > zero else zero) + log1p(exp(-abs(x)))

    def scalar_backward(grad, x):
        return grad * sigmoid(x)

    def derivative(grad, x, out):  # scalar_backward with firefly ops, for create_graph=True
        return grad * x.sigmoid()


class ExtraGELU(UnaryOp):
    """gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): the tanh form of GELU, as
    ``torch.nn.functional.gelu(x, approximate="tanh")``."""

    name = "extra_gelu"
    forward_cost = backward_cost = "transcendental"
    domain = (-4.0, 4.0)

    def scalar_forward(x):
        half = like(0.5, x)
        u = like(SQRT_2_OVER_PI, x) * (x + like(GELU_TANH_COEF, x) * x * x * x)
        return half * x * (like(1.0, x) + tanh(u))

    def scalar_backward(grad, x):
        one, half, c = like(1.0, x), like(0.5, x), like(GELU_TANH_COEF, x)
        t = tanh(like(SQRT_2_OVER_PI, x) * (x + c * x * x * x))
        du = like(SQRT_2_OVER_PI, x) * (one + like(3.0, x) * c * x * x)
        return grad * (half * (one + t) + half * x * (one - t * t) * du)

    def derivative(grad, x, out):
        t = (SQRT_2_OVER_PI * (x + GELU_TANH_COEF * x * x * x)).tanh()
        du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_COEF * x * x)
        return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


class ExtraClamp(Op):
    """clamp(x, min, max): x limited to [min, max], as ``torch.clamp`` with two bounds. The
    gradient passes where min <= x <= max and is 0 outside."""

    name = "extra_clamp"
    forward_kernel, backward_kernel = K.clamp_forward, K.clamp_backward

    @classmethod
    def forward(cls, ctx, x, min=-1.0, max=1.0):
        for label, bound in (("min", min), ("max", max)):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
                raise ctx.error(f"{label} must be a number, got {bound!r}", x)
        if min > max:
            raise ctx.error(f"min ({min}) must not exceed max ({max})", x)
        # Bounds in x's dtype: float64 bounds would compare a float32 x in float64.
        bounds = (x.dtype.type(min), x.dtype.type(max))
        out = np.empty_like(x)
        cls.forward_kernel(x.reshape(-1), *bounds, out.reshape(-1))
        ctx.save_for_backward(x)
        ctx.bounds = bounds
        return out

    @classmethod
    def backward(cls, ctx, grad):
        (x,) = ctx.saved_tensors
        dx = np.empty_like(x)
        cls.backward_kernel(grad.reshape(-1), x.reshape(-1), *ctx.bounds, dx.reshape(-1))
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        # backward as firefly ops on Tensors, for create_graph=True: the mask is a constant.
        (x,) = inputs
        low, high = ctx.bounds
        return grad * ((x >= float(low)) & (x <= float(high)))

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
        low = float(rng.uniform(-1.5, 0.0))
        return (x,), {"min": low, "max": low + float(rng.uniform(0.5, 2.0))}
