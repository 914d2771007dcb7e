"""Activation ops with torch's defaults and gradients (at a kink, the side torch takes).

``silu`` and ``log_sigmoid`` are their scalar math on ``UnaryOp`` (the kernel families build
their kernels). The ops with attributes are written in full over ``firefly.kernels.activation``:
``gelu`` (``approximate="none"`` or ``"tanh"``), ``leaky_relu`` (``negative_slope``), ``elu``
(``alpha``), ``softplus`` (``beta``, ``threshold``) and ``hardtanh`` (``min_val``, ``max_val``).
"""

import math

import numpy as np

from firefly.kernels import activation as K
from firefly.kernels.vmath import exp, like, log1p, sigmoid
from firefly.ops.base import Op
from firefly.ops.families import UnaryOp, select
from firefly.ops.registry import register
from firefly.validation import check_number


class _Activation(Op):
    """Forward ``forward_kernel(x, *parameters, out)``, backward ``backward_kernel(grad, x,
    *parameters, dx)`` over flat arrays; subclasses turn attributes into ``parameters``."""

    domain = (-3.0, 3.0)

    @staticmethod
    def parameters(**attrs):
        if attrs:
            raise TypeError(f"unexpected arguments {sorted(attrs)}")
        return ()

    @staticmethod
    def forward(ctx, x, **attrs):
        try:
            params = ctx.op.parameters(**attrs)
        except TypeError as exc:
            if ctx.op.name in str(exc):
                raise
            raise TypeError(f"{ctx.op.name}: {exc}") from None
        out = np.empty_like(x)
        ctx.op.forward_kernel(x.reshape(-1), *params, out.reshape(-1))
        ctx.save_for_backward(x)
        ctx.params = params
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = np.empty_like(grad)
        ctx.op.backward_kernel(grad.reshape(-1), x.reshape(-1), *ctx.params, dx.reshape(-1))
        return dx

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(*cls.domain, size=shape)
        x = np.where(np.abs(x) < 0.05, 0.1, x)  # away from the kink at 0 (finite differences)
        return (x.astype(dtype),), cls.sample_attrs(rng)

    @staticmethod
    def sample_attrs(rng):
        return {}


@register
class GELU(_Activation):
    name = "gelu"
    forward_kernel, backward_kernel = K.gelu_forward, K.gelu_backward

    @staticmethod
    def parameters(approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return (approximate == "tanh",)

    @staticmethod
    def sample_attrs(rng):
        return {"approximate": "tanh" if rng.random() < 0.5 else "none"}

    @staticmethod
    def decomposition(x, approximate="none"):
        if approximate == "tanh":
            inner = (x + 0.044715 * x * x * x) * math.sqrt(2.0 / math.pi)
            return 0.5 * x * (1.0 + inner.tanh())
        return 0.5 * x * (1.0 + (x * (1.0 / math.sqrt(2.0))).erf())


@register
class LeakyReLU(_Activation):
    name = "leaky_relu"
    forward_kernel, backward_kernel = K.leaky_relu_forward, K.leaky_relu_backward

    @staticmethod
    def parameters(negative_slope=0.01):
        return (float(check_number("leaky_relu", "negative_slope", negative_slope, finite=False)),)

    @staticmethod
    def sample_attrs(rng):
        return {"negative_slope": float(rng.uniform(0.01, 0.3))}

    @staticmethod
    def decomposition(x, negative_slope=0.01):
        return select(x.numpy() > 0.0, x, x * negative_slope)


@register
class ELU(_Activation):
    name = "elu"
    forward_kernel, backward_kernel = K.elu_forward, K.elu_backward

    @staticmethod
    def parameters(alpha=1.0):
        return (float(check_number("elu", "alpha", alpha, finite=False)),)

    @staticmethod
    def sample_attrs(rng):
        return {"alpha": float(rng.uniform(0.5, 2.0))}

    @staticmethod
    def decomposition(x, alpha=1.0):
        # exp of min(x, 0): the branch not taken must not overflow (0 * inf is NaN).
        return select(x.numpy() > 0.0, x, alpha * (x.clamp(max=0.0).exp() - 1.0))


@register
class SiLU(UnaryOp):
    name = "silu"
    forward_cost = backward_cost = "transcendental"
    domain = (-3.0, 3.0)

    def scalar_forward(x):
        return x * sigmoid(x)

    def scalar_backward(grad, x):
        s = sigmoid(x)
        one = like(1.0, x)
        return grad * s * (one + x * (one - s))

    def derivative(grad, x, out):
        s = x.sigmoid()
        return grad * s * (1.0 + x * (1.0 - s))


@register
class Softplus(_Activation):
    name = "softplus"
    forward_kernel, backward_kernel = K.softplus_forward, K.softplus_backward

    @staticmethod
    def parameters(beta=1.0, threshold=20.0):
        beta = float(check_number("softplus", "beta", beta, finite=False))
        if beta == 0:
            raise ValueError("softplus: beta must not be 0")
        return beta, float(check_number("softplus", "threshold", threshold, finite=False))

    @staticmethod
    def sample_attrs(rng):
        return {"beta": float(rng.uniform(0.5, 2.0)), "threshold": 20.0}

    @staticmethod
    def decomposition(x, beta=1.0, threshold=20.0):
        z = x * beta
        smooth = (z.relu() + ((-z.abs()).exp() + 1.0).log()) / beta
        return select(z.numpy() > threshold, x, smooth)


@register
class Hardtanh(_Activation):
    name = "hardtanh"
    forward_kernel, backward_kernel = K.hardtanh_forward, K.hardtanh_backward

    @staticmethod
    def parameters(min_val=-1.0, max_val=1.0):
        min_val, max_val = (
            float(check_number("hardtanh", "min_val", min_val, finite=False)),
            float(check_number("hardtanh", "max_val", max_val, finite=False)),
        )
        if not min_val < max_val:
            raise ValueError(f"hardtanh: min_val ({min_val}) must be below max_val ({max_val})")
        return min_val, max_val

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = rng.uniform(-3.0, 3.0, size=shape)
        x = np.where(np.abs(np.abs(x) - 1.0) < 0.05, 0.5, x)  # away from the kinks at -1 and 1
        return (x.astype(dtype),), {}

    @staticmethod
    def decomposition(x, min_val=-1.0, max_val=1.0):
        return x.clamp(min_val, max_val)


@register
class LogSigmoid(UnaryOp):
    """log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|)): no overflow for large |x|."""

    name = "log_sigmoid"
    forward_cost = backward_cost = "transcendental"
    domain = (-3.0, 3.0)

    def scalar_forward(x):
        zero = like(0.0, x)
        return (x if x < zero else zero) - log1p(exp(-abs(x)))

    def scalar_backward(grad, x):
        return grad * sigmoid(-x)

    def derivative(grad, x, out):
        return grad * (-x).sigmoid()
