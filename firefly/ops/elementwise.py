"""Unary elementwise ops, as scalar math on ``UnaryOp``. Backward reads the input, or the
output where the derivative is cheaper from it."""

import math

import numpy as np

from firefly.kernels import vmath
from firefly.kernels.vmath import like
from firefly.ops import samples
from firefly.ops.families import UnaryOp
from firefly.ops.registry import register

TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
LN_2 = math.log(2.0)
LN_10 = math.log(10.0)


@register
class Neg(UnaryOp):
    name = "neg"
    backward_reads = None

    def scalar_forward(x):
        return -x

    def scalar_backward(grad, _):
        return -grad

    def derivative(grad, x, out):
        return -grad


@register
class ReLU(UnaryOp):
    name = "relu"

    def scalar_forward(x):
        return 0.0 if x <= 0.0 else x  # NaN fails the test and propagates, as np.maximum(x, 0)

    def scalar_backward(grad, x):
        return grad if x > 0.0 else 0.0

    def derivative(grad, x, out):
        return grad * (x > 0.0)


@register
class Exp(UnaryOp):
    name = "exp"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.exp

    def scalar_backward(grad, y):
        return grad * y

    def derivative(grad, x, y):
        return grad * y


@register
class Log(UnaryOp):
    name = "log"
    forward_cost = "transcendental"
    domain = (0.2, 3.0)
    scalar_forward = vmath.log

    def scalar_backward(grad, x):
        return grad / x

    def derivative(grad, x, out):
        return grad / x


@register
class Sigmoid(UnaryOp):
    name = "sigmoid"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.sigmoid

    def scalar_backward(grad, s):
        return grad * s * (1.0 - s)

    def derivative(grad, x, s):
        return grad * s * (1.0 - s)


@register
class Tanh(UnaryOp):
    name = "tanh"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.tanh

    def scalar_backward(grad, t):
        return grad * (1.0 - t * t)

    def derivative(grad, x, t):
        return grad * (1.0 - t * t)


@register
class Erf(UnaryOp):
    name = "erf"
    forward_cost = backward_cost = "transcendental"

    scalar_forward = vmath.erf

    def scalar_backward(grad, x):
        return grad * like(TWO_OVER_SQRT_PI, x) * vmath.exp(-x * x)

    def derivative(grad, x, out):
        return grad * TWO_OVER_SQRT_PI * (-x * x).exp()


@register
class Erfc(UnaryOp):
    """1 - erf(x), computed directly: no cancellation for large x, where erfc is tiny."""

    name = "erfc"
    forward_cost = backward_cost = "transcendental"

    scalar_forward = vmath.erfc

    def scalar_backward(grad, x):
        return -grad * like(TWO_OVER_SQRT_PI, x) * vmath.exp(-x * x)

    def derivative(grad, x, out):
        return -grad * TWO_OVER_SQRT_PI * (-x * x).exp()


@register
class Sin(UnaryOp):
    name = "sin"
    forward_cost = backward_cost = "transcendental"

    scalar_forward = vmath.sin

    def scalar_backward(grad, x):
        return grad * vmath.cos(x)

    def derivative(grad, x, out):
        return grad * x.cos()


@register
class Cos(UnaryOp):
    name = "cos"
    forward_cost = backward_cost = "transcendental"

    scalar_forward = vmath.cos

    def scalar_backward(grad, x):
        return -grad * vmath.sin(x)

    def derivative(grad, x, out):
        return -grad * x.sin()


@register
class Tan(UnaryOp):
    name = "tan"
    backward_reads = "output"
    forward_cost = "transcendental"
    domain = (-1.2, 1.2)

    scalar_forward = vmath.tan

    def scalar_backward(grad, y):
        return grad * (1.0 + y * y)

    def derivative(grad, x, y):
        return grad * (1.0 + y * y)


@register
class Asin(UnaryOp):
    name = "asin"
    forward_cost = backward_cost = "transcendental"
    domain = (-0.9, 0.9)

    scalar_forward = vmath.asin

    def scalar_backward(grad, x):
        return grad / np.sqrt(like(1.0, x) - x * x)

    def derivative(grad, x, out):
        return grad / (1.0 - x * x).sqrt()


@register
class Acos(UnaryOp):
    name = "acos"
    forward_cost = backward_cost = "transcendental"
    domain = (-0.9, 0.9)

    scalar_forward = vmath.acos

    def scalar_backward(grad, x):
        return -grad / np.sqrt(like(1.0, x) - x * x)

    def derivative(grad, x, out):
        return -grad / (1.0 - x * x).sqrt()


@register
class Atan(UnaryOp):
    name = "atan"
    forward_cost = "transcendental"

    scalar_forward = vmath.atan

    def scalar_backward(grad, x):
        return grad / (like(1.0, x) + x * x)

    def derivative(grad, x, out):
        return grad / (1.0 + x * x)


@register
class Sinh(UnaryOp):
    name = "sinh"
    forward_cost = backward_cost = "transcendental"

    scalar_forward = vmath.sinh

    def scalar_backward(grad, x):
        return grad * vmath.cosh(x)

    def derivative(grad, x, out):
        return grad * x.cosh()


@register
class Cosh(UnaryOp):
    name = "cosh"
    forward_cost = backward_cost = "transcendental"

    scalar_forward = vmath.cosh

    def scalar_backward(grad, x):
        return grad * vmath.sinh(x)

    def derivative(grad, x, out):
        return grad * x.sinh()


@register
class Log1p(UnaryOp):
    name = "log1p"
    forward_cost = "transcendental"
    domain = (-0.9, 2.0)
    scalar_forward = vmath.log1p

    def scalar_backward(grad, x):
        return grad / (1.0 + x)

    def derivative(grad, x, out):
        return grad / (1.0 + x)


@register
class Expm1(UnaryOp):
    name = "expm1"
    backward_reads = "output"
    forward_cost = "transcendental"

    def scalar_forward(x):
        return np.expm1(x)

    def scalar_backward(grad, y):
        return grad * (y + 1.0)

    def derivative(grad, x, y):
        return grad * (y + 1.0)


@register
class Log2(UnaryOp):
    name = "log2"
    forward_cost = "transcendental"
    domain = (0.1, 3.0)

    def scalar_forward(x):
        return np.log2(x)

    def scalar_backward(grad, x):
        return grad / (x * LN_2)

    def derivative(grad, x, out):
        return grad / (x * LN_2)


@register
class Log10(UnaryOp):
    name = "log10"
    forward_cost = "transcendental"
    domain = (0.1, 3.0)

    def scalar_forward(x):
        return np.log10(x)

    def scalar_backward(grad, x):
        return grad / (x * LN_10)

    def derivative(grad, x, out):
        return grad / (x * LN_10)


@register
class Rsqrt(UnaryOp):
    name = "rsqrt"
    backward_reads = "output"
    domain = (0.1, 3.0)

    def scalar_forward(x):
        return 1.0 / np.sqrt(x)

    def scalar_backward(grad, y):
        return -0.5 * grad * y * y * y

    def derivative(grad, x, y):
        return -0.5 * grad * y * y * y


@register
class Reciprocal(UnaryOp):
    """1 / x; sampled away from the pole at 0 (both signs)."""

    name = "reciprocal"
    backward_reads = "output"

    def scalar_forward(x):
        return 1.0 / x

    def scalar_backward(grad, y):
        return -grad * y * y

    def derivative(grad, x, y):
        return -grad * y * y

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        magnitude = samples.uniform(rng, shape, np.float64, 0.3, 2.0)
        sign = np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
        return (np.asarray(sign * magnitude, dtype=dtype),), {}


@register
class Square(UnaryOp):
    name = "square"

    def scalar_forward(x):
        return x * x

    def scalar_backward(grad, x):
        return 2.0 * grad * x

    def derivative(grad, x, out):
        return 2.0 * grad * x


def _away_from_integers(cls, rng, shape, dtype):
    """Values whose fractional part lies in (0.1, 0.4) or (0.6, 0.9): away from the integers,
    where the rounding ops jump and finite differences are no gradient, and from the halves,
    where round breaks ties."""
    whole = rng.integers(-2, 2, size=shape).astype(np.float64)
    fraction = rng.uniform(0.1, 0.4, size=shape) + np.where(rng.uniform(size=shape) < 0.5, 0.5, 0.0)
    return (np.asarray(whole + fraction, dtype=dtype),), {}


def _zero_gradient(grad, _):
    return 0.0 * grad  # 0 * NaN stays NaN, as in PyTorch


class _Rounding(UnaryOp):
    """A step function: its gradient is 0 everywhere, as PyTorch's autograd defines it. Each
    subclass inherits ``scalar_backward`` and, naming an op, gets a backward kernel of its own
    under that name."""

    backward_reads = None
    scalar_backward = _zero_gradient
    sample_inputs = classmethod(_away_from_integers)

    def derivative(grad, x, out):
        return 0.0 * grad


@register
class Floor(_Rounding):
    name = "floor"

    def scalar_forward(x):
        return np.floor(x)


@register
class Ceil(_Rounding):
    name = "ceil"

    def scalar_forward(x):
        return np.ceil(x)


@register
class Round(_Rounding):
    """To the nearest integer, halves to even (torch.round, np.rint)."""

    name = "round"

    def scalar_forward(x):
        return np.rint(x)


@register
class Trunc(_Rounding):
    name = "trunc"

    def scalar_forward(x):
        return np.trunc(x)


@register
class Frac(UnaryOp):
    """x - trunc(x), with the sign of x; its gradient passes through unchanged, as in PyTorch."""

    name = "frac"
    backward_reads = None
    sample_inputs = classmethod(_away_from_integers)

    def scalar_forward(x):
        return x - np.trunc(x)

    def scalar_backward(grad, _):
        return grad

    def derivative(grad, x, out):
        return grad
