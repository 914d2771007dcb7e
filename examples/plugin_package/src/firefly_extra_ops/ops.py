"""The plugin's ops. Each is one ``firefly.ops.Op`` subclass, written exactly like firefly's
built-in unary ops; the ``firefly.ops`` entry points in pyproject.toml name these classes, and
firefly registers them (validating that both kernels are Numba-compiled) when it loads plugins.

The engine hands ``forward`` C-contiguous float32 or float64 arrays of one dtype and rejects
anything else with a TypeError, so the ops validate only their own attributes.
"""
import math

import numpy as np

from firefly.ops import Op

from firefly_extra_ops import kernels as K

GELU_APPROXIMATIONS = ("none", "tanh")


class Softplus(Op):
    """softplus(x) = log(1 + exp(beta * x)) / beta, a smooth ReLU (``torch.nn.functional.softplus``
    without its ``threshold``: the kernel's formula is exact and overflow-free for every x)."""

    name = "softplus"
    forward_kernel, backward_kernel = K.softplus_forward, K.softplus_backward

    @staticmethod
    def forward(ctx, x, beta=1.0):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (
            math.isfinite(beta) and beta > 0
        ):
            raise ctx.error(f"beta must be a positive finite number, got {beta!r}", x)
        beta = float(beta)
        out = np.empty_like(x)
        K.softplus_forward(x.reshape(-1), beta, out.reshape(-1))
        ctx.save_for_backward(x)
        ctx.beta = beta
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = np.empty_like(x)
        K.softplus_backward(grad.reshape(-1), x.reshape(-1), ctx.beta, dx.reshape(-1))
        return dx


class GELU(Op):
    """gelu(x) = x * Phi(x), Phi the standard normal CDF, as ``torch.nn.functional.gelu``:
    ``approximate="none"`` (default) is exact, through erf; ``approximate="tanh"`` is the
    tanh approximation of Hendrycks & Gimpel, within about 1e-3 of the exact value."""

    name = "gelu"
    forward_kernel, backward_kernel = K.gelu_forward, K.gelu_backward

    @staticmethod
    def forward(ctx, x, approximate="none"):
        if approximate not in GELU_APPROXIMATIONS:
            raise ctx.error(
                f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}", x
            )
        use_tanh = approximate == "tanh"
        out = np.empty_like(x)
        K.gelu_forward(x.reshape(-1), use_tanh, out.reshape(-1))
        ctx.save_for_backward(x)
        ctx.use_tanh = use_tanh
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = np.empty_like(x)
        K.gelu_backward(grad.reshape(-1), x.reshape(-1), ctx.use_tanh, dx.reshape(-1))
        return dx

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # Both formulas are worth checking; the tanh one has the more intricate derivative.
        x = rng.uniform(-4.0, 4.0, size=shape).astype(dtype)
        return (x,), {"approximate": str(rng.choice(GELU_APPROXIMATIONS))}
